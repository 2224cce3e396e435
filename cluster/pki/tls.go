package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ServerConfig is the TLS configuration of a port that requires a cluster
// certificate from every client (the Raft port).
func (b *Bundle) ServerConfig() *tls.Config {
	c := b.baseConfig()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c
}

// APIServerConfig is the TLS configuration of the remote API port: a
// client certificate is verified when given, and the API itself refuses
// every call without one except join, which proves itself with a token.
func (b *Bundle) APIServerConfig() *tls.Config {
	c := b.baseConfig()
	c.ClientAuth = tls.VerifyClientCertIfGiven
	return c
}

// ClientConfig is the TLS configuration for dialing another member: it
// presents this node's certificate and verifies the peer against the CA
// (including the peer's IP or name).
func (b *Bundle) ClientConfig() *tls.Config {
	return b.baseConfig()
}

func (b *Bundle) baseConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(b.CA.Cert)
	// The node certificate is read at each handshake, so a renewal
	// (SetNodeCert) takes effect without restarting anything.
	current := func() *tls.Certificate {
		leaf := b.Leaf()
		return &tls.Certificate{Certificate: [][]byte{leaf.Raw, b.CA.Cert.Raw}, PrivateKey: b.NodeKey, Leaf: leaf}
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current(), nil },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return current(), nil },
		RootCAs:              pool,
		ClientCAs:            pool,
	}
}

// ErrCAMismatch is returned when a server's CA does not match the pin.
var ErrCAMismatch = errors.New("server's cluster CA does not match the token's CA hash")

// PinnedClientConfig is for a node that has no cluster certificate yet
// (join): it accepts the server only if the server's chain ends in a CA
// whose hash is caHash and the leaf is signed by it. It presents no
// certificate. The verified CA is passed to onCA.
func PinnedClientConfig(caHash string, onCA func(*x509.Certificate)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verification is done below against the pinned CA: the joining
		// node has no CA pool yet, only the pin.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) < 2 {
				return fmt.Errorf("%w: server sent no CA certificate", ErrCAMismatch)
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return fmt.Errorf("parse server certificate: %w", err)
				}
				certs[i] = c
			}
			var ca *x509.Certificate
			for _, c := range certs[1:] {
				if c.IsCA && Hash(c) == caHash {
					ca = c
				}
			}
			if ca == nil {
				return ErrCAMismatch
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("%w: %v", ErrCAMismatch, err)
			}
			if onCA != nil {
				onCA(ca)
			}
			return nil
		},
	}
}
