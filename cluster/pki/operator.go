package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"regexp"
	"time"
)

// Roles a certificate's OrganizationalUnit names. A node certificate names
// its member role ("gpu" or "witness"); an operator certificate names
// RoleOperator and is valid for client authentication only, so it can never
// serve a port or stand in for a node.
const RoleOperator = "operator"

// Operator certificate lifetimes: short, so that a lost laptop's bundle is
// worthless within hours (docs/security.md).
const (
	DefaultOperatorTTL = 8 * time.Hour
	MaxOperatorTTL     = 7 * 24 * time.Hour
)

// File names inside an operator's certificate directory (`newbieha
// operator cert --out DIR`; the CLI's --cert-dir).
const (
	OperatorCertFile = "operator.crt"
	OperatorKeyFile  = "operator.key"
)

var operatorNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateOperatorName checks a name an operator asks a certificate for.
// Names with '@' are reserved: root@NODE is what a member signs for itself
// when it acts for root on its local socket.
func ValidateOperatorName(name string) error {
	if !operatorNameRE.MatchString(name) {
		return fmt.Errorf("operator name %q: want 1-63 of a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}

// IssueOperator signs a client-only certificate naming an operator for
// ttl. name is not checked here (root@NODE is legal for the agent itself);
// callers that take a name from a person check it with ValidateOperatorName.
func (ca *CA) IssueOperator(name string, ttl time.Duration, pub crypto.PublicKey) (*x509.Certificate, error) {
	if ca.Key == nil {
		return nil, ErrNoCAKey
	}
	if name == "" || ttl <= 0 || ttl > MaxOperatorTTL {
		return nil, fmt.Errorf("issue operator certificate: name %q and a ttl in (0, %v] are required, got %v", name, MaxOperatorTTL, ttl)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{RoleOperator}, Organization: []string{"newbieha"}},
		// A little slack for clocks that run behind the signer's.
		NotBefore:   now.Add(-5 * time.Minute),
		NotAfter:    now.Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign operator certificate for %s: %w", name, err)
	}
	return x509.ParseCertificate(der)
}

// Role is the role a certificate names in its OrganizationalUnit ("" if
// none).
func Role(c *x509.Certificate) string {
	if c == nil || len(c.Subject.OrganizationalUnit) != 1 {
		return ""
	}
	return c.Subject.OrganizationalUnit[0]
}

// IsNodeRole reports whether role is a member role a node certificate may
// carry.
func IsNodeRole(role string) bool { return role == "gpu" || role == "witness" }

// OperatorClientConfig is the TLS configuration of an operator's client:
// it presents the operator certificate and verifies the member it calls
// against the cluster CA, including the member's IP.
func OperatorClientConfig(caCert, cert *x509.Certificate, key crypto.Signer) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{cert.Raw, caCert.Raw},
			PrivateKey:  key,
			Leaf:        cert,
		}},
		RootCAs: pool,
	}
}

// Serial is a certificate's serial number as member records keep it:
// lower-case hex.
func Serial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }
