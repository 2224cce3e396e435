package pki

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToken_RoundTripAndMalformed(t *testing.T) {
	tok, err := NewToken(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if !SecretMatches(tok.Secret, tok.SecretHash()) || SecretMatches(tok.Secret+"0", tok.SecretHash()) {
		t.Fatal("SecretMatches wrong")
	}
	for name, s := range map[string]string{
		"empty":       "",
		"prefix":      "nbha2." + tok.ID + "." + tok.Secret + "." + tok.CAHash,
		"short id":    "nbha1.abc." + tok.Secret + "." + tok.CAHash,
		"bad secret":  "nbha1." + tok.ID + ".xyz." + tok.CAHash,
		"bad hash":    "nbha1." + tok.ID + "." + tok.Secret + ".00",
		"extra parts": tok.String() + ".x",
	} {
		if _, err := ParseToken(s); !errors.Is(err, ErrMalformedToken) {
			t.Errorf("%s: err = %v, want ErrMalformedToken", name, err)
		}
	}
}

func TestBundle_WriteLoadModes(t *testing.T) {
	ca, err := NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	cert, err := ca.Issue(NodeIdentity{Name: "node1", Role: "gpu", IP: mustIP("10.0.0.1")}, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := WriteBundle(dir, &Bundle{CA: ca, NodeCert: cert, NodeKey: key}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CACertFile, CAKeyFile, NodeCertFile, NodeKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v", f, err, fi.Mode().Perm())
		}
	}
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if Hash(b.CA.Cert) != Hash(ca.Cert) || b.CA.Key == nil || b.NodeCert.Subject.CommonName != "node1" {
		t.Fatal("loaded bundle differs")
	}
	// A witness bundle has no CA key and cannot sign.
	_ = os.Remove(filepath.Join(dir, CAKeyFile))
	b, err = LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CA.Issue(NodeIdentity{Name: "x", IP: mustIP("10.0.0.2")}, &key.PublicKey); !errors.Is(err, ErrNoCAKey) {
		t.Fatalf("issue without key: %v", err)
	}
}

func mustIP(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLoadBundle_NamesTheBadFile(t *testing.T) {
	ca, _ := NewCA("t")
	key, _ := NewKey()
	cert, _ := ca.Issue(NodeIdentity{Name: "n", Role: "gpu", IP: mustIP("10.0.0.1")}, &key.PublicKey)
	dir := t.TempDir()
	if err := WriteBundle(dir, &Bundle{CA: ca, NodeCert: cert, NodeKey: key}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, NodeCertFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, NodeCertFile)) {
		t.Fatalf("err = %v, want it to name %s", err, NodeCertFile)
	}
	_ = os.Remove(filepath.Join(dir, NodeKeyFile))
	_ = os.WriteFile(filepath.Join(dir, NodeCertFile), EncodeCert(cert), 0o600)
	if _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), NodeKeyFile) {
		t.Fatalf("err = %v, want it to name the missing %s", err, NodeKeyFile)
	}
}
