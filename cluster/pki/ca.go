package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Validity periods of what this package issues. Node certificates are
// short-lived and renewed by their agent through the cluster well before
// they expire (cluster/renew.go); the CA is rotated by hand (see
// docs/security.md).
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 30 * 24 * time.Hour
)

// File names inside a node's TLS directory.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// CA is the cluster certificate authority. Key is nil on members that were
// not given the CA key (witnesses): they cannot admit new nodes.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA creates a fresh self-signed cluster CA.
func NewCA(clusterName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "newbieha cluster CA " + clusterName, Organization: []string{"newbieha"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Hash is the pin of a CA: "sha256:" and the hex SHA-256 of its
// SubjectPublicKeyInfo, as kubeadm's discovery-token-ca-cert-hash.
func Hash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// NodeIdentity is what a node certificate asserts.
type NodeIdentity struct {
	Name string
	Role string
	IP   netip.Addr
}

// Issue signs a node certificate for pub. The certificate is valid for
// both server and client authentication, names the node in its CommonName
// and DNS SAN, its role in OrganizationalUnit, and carries its advertised IP.
func (ca *CA) Issue(id NodeIdentity, pub crypto.PublicKey) (*x509.Certificate, error) {
	return ca.IssueFor(id, pub, NodeValidity)
}

// IssueFor is Issue with a validity other than NodeValidity.
func (ca *CA) IssueFor(id NodeIdentity, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	if ca.Key == nil {
		return nil, ErrNoCAKey
	}
	if id.Name == "" || !id.IP.IsValid() {
		return nil, fmt.Errorf("issue certificate: name %q and ip %v are required", id.Name, id.IP)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.Name, OrganizationalUnit: []string{id.Role}, Organization: []string{"newbieha"}},
		DNSNames:     []string{id.Name},
		IPAddresses:  []net.IP{net.IP(id.IP.AsSlice())},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate for %s: %w", id.Name, err)
	}
	return x509.ParseCertificate(der)
}

// ErrNoCAKey is returned when a member without the CA key is asked to sign.
var ErrNoCAKey = errors.New("this member does not hold the cluster CA key")

// NewKey generates a node private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	return k, nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	return s, nil
}

// EncodeCert returns the PEM form of a certificate.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// EncodeKey returns the PEM (PKCS#8) form of a private key.
func EncodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodePublicKey returns the PEM (PKIX) form of a public key.
func EncodePublicKey(k crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParseCert parses one PEM certificate.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// ParseKey parses one PEM PKCS#8 private key.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", k)
	}
	return s, nil
}

// ParsePublicKey parses one PEM PKIX public key; only ECDSA P-256 is accepted.
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("public key type %T: want ECDSA P-256", k)
	}
	return ek, nil
}

// Bundle is one node's TLS material. NodeCert is the certificate the node
// started with; after a renewal (SetNodeCert) the TLS configurations made
// from the bundle present the new one, which Leaf returns.
type Bundle struct {
	CA       *CA
	NodeCert *x509.Certificate
	NodeKey  crypto.Signer

	mu      sync.RWMutex
	renewed *x509.Certificate
}

// Leaf is the node certificate in use: the latest SetNodeCert, else
// NodeCert.
func (b *Bundle) Leaf() *x509.Certificate {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.renewed != nil {
		return b.renewed
	}
	return b.NodeCert
}

// SetNodeCert makes c, a renewal of the node certificate for the same key,
// the one every TLS configuration of this bundle presents from now on.
func (b *Bundle) SetNodeCert(c *x509.Certificate) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.renewed = c
}

// WriteBundle writes the bundle into dir (created 0700), files 0600. The CA
// key is written only when the bundle has it.
func WriteBundle(dir string, b *Bundle) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create tls dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod tls dir %s: %w", dir, err)
	}
	nodeKey, err := EncodeKey(b.NodeKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		CACertFile:   EncodeCert(b.CA.Cert),
		NodeCertFile: EncodeCert(b.NodeCert),
		NodeKeyFile:  nodeKey,
	}
	if b.CA.Key != nil {
		caKey, err := EncodeKey(b.CA.Key)
		if err != nil {
			return err
		}
		files[CAKeyFile] = caKey
	}
	for name, data := range files {
		if err := WriteFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// LoadBundle reads a bundle written by WriteBundle. A missing CA key is not
// an error (witnesses have none).
func LoadBundle(dir string) (*Bundle, error) {
	// load reads one PEM file and parses it, naming the file on error.
	load := func(name string, optional bool, parse func([]byte) error) error {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if err := parse(b); err != nil {
			return fmt.Errorf("parse %s: %w", p, err)
		}
		return nil
	}
	b := &Bundle{CA: &CA{}}
	var err error
	for _, f := range []struct {
		name     string
		optional bool
		parse    func([]byte) error
	}{
		{CACertFile, false, func(d []byte) error { b.CA.Cert, err = ParseCert(d); return err }},
		{CAKeyFile, true, func(d []byte) error { b.CA.Key, err = ParseKey(d); return err }},
		{NodeCertFile, false, func(d []byte) error { b.NodeCert, err = ParseCert(d); return err }},
		{NodeKeyFile, false, func(d []byte) error { b.NodeKey, err = ParseKey(d); return err }},
	} {
		if err := load(f.name, f.optional, f.parse); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and
// renames it into place, so a crash never leaves a half-written file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}
