package gossip

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testKey  = bytes.Repeat([]byte{0x42}, KeySize)
	wrongKey = bytes.Repeat([]byte{0x24}, KeySize)
)

// testLog routes a node's logs to t.Log (shown only on failure) and keeps
// them for assertions. Lines arriving after the test ended (memberlist
// goroutines wind down after Shutdown) are kept but not sent to t.
type testLog struct {
	t    testing.TB
	name string
	mu   sync.Mutex
	done bool
	buf  bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Logf("%s: %s", l.name, bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestLog(t testing.TB, name string) (*testLog, *slog.Logger) {
	l := &testLog{t: t, name: name}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "gossip")
}

// newNode starts a member on ip (127.0.0.x) at a free port with testKey;
// mod may change the config. Closed at cleanup.
func newNode(t testing.TB, name, ip string, mod func(*Config)) (*Gossip, *testLog) {
	t.Helper()
	l, logger := newTestLog(t, name)
	cfg := Config{Name: name, BindAddr: ip, Key: testKey, Logger: logger}
	withIdentity(&cfg)
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g, l
}

// newCluster starts n members on 127.0.0.1..n and joins them all to the
// first; it returns once every member sees every other alive, with each
// member's log.
func newCluster(t testing.TB, n int, mod func(*Config)) ([]*Gossip, []*testLog) {
	t.Helper()
	nodes := make([]*Gossip, n)
	logs := make([]*testLog, n)
	for i := range nodes {
		nodes[i], logs[i] = newNode(t, fmt.Sprintf("node%d", i+1), fmt.Sprintf("127.0.0.%d", i+1), mod)
	}
	for _, g := range nodes[1:] {
		if _, err := g.Join([]string{nodes[0].LocalAddr()}); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		for _, g := range nodes {
			if a := aliveNames(g); len(a) != n {
				return fmt.Errorf("%s sees alive %v", g.cfg.Name, a)
			}
		}
		return nil
	})
	return nodes, logs
}

func aliveNames(g *Gossip) []string {
	var out []string
	for _, m := range g.Members() {
		if m.Alive {
			out = append(out, m.Name)
		}
	}
	return out
}

func member(g *Gossip, name string) (Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seesState reports whether every node has want[name] as name's state.
func seesState(nodes []*Gossip, want map[string][]byte) error {
	var missing []string
	for _, g := range nodes {
		for name, w := range want {
			m, ok := member(g, name)
			if !ok || !bytes.Equal(m.State, w) {
				missing = append(missing, g.cfg.Name+"→"+name)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("states not yet seen: %s", strings.Join(missing, " "))
	}
	return nil
}

// testPKI is a cluster CA for tests and a node identity per name, made on
// first use. The CA checks what the agent's VerifyOrigin checks: the chain
// and that the certificate's CommonName is the origin.
type testPKI struct {
	mu    sync.Mutex
	key   *ecdsa.PrivateKey
	cert  *x509.Certificate
	pool  *x509.CertPool
	nodes map[string]testIdentity
}

type testIdentity struct {
	key  *ecdsa.PrivateKey
	cert []byte
}

var theTestPKI = func() *testPKI {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{key: key, cert: cert, pool: pool, nodes: map[string]testIdentity{}}
}()

// identity returns name's key and certificate (CN=name) from the test CA.
func (p *testPKI) identity(name string) testIdentity {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id, ok := p.nodes[name]; ok {
		return id
	}
	id := p.issue(name, p.key, p.cert)
	p.nodes[name] = id
	return id
}

// issue makes a certificate for name signed by caKey/caCert.
func (p *testPKI) issue(name string, caKey *ecdsa.PrivateKey, caCert *x509.Certificate) testIdentity {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		panic(err)
	}
	serial, _ := crand.Int(crand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name, OrganizationalUnit: []string{"gpu"}},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		panic(err)
	}
	return testIdentity{key: key, cert: der}
}

// verifyOrigin is the tests' Config.VerifyOrigin.
func (p *testPKI) verifyOrigin(origin string, der []byte) (crypto.PublicKey, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: p.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, err
	}
	if c.Subject.CommonName != origin {
		return nil, fmt.Errorf("certificate of %q cannot speak for %q", c.Subject.CommonName, origin)
	}
	return c.PublicKey, nil
}

// withIdentity sets name's test identity and the test verifier on cfg.
func withIdentity(cfg *Config) {
	id := theTestPKI.identity(cfg.Name)
	cfg.SigningKey, cfg.Certificate, cfg.VerifyOrigin = id.key, id.cert, theTestPKI.verifyOrigin
}

// signAs wraps a state message in the full signed envelope of signer's
// identity.
func signAs(t testing.TB, signer testIdentity, inner []byte) []byte {
	t.Helper()
	sig, err := sign(signer.key, inner)
	if err != nil {
		t.Fatal(err)
	}
	return encodeEnvelope(formFull, signer.cert, sig, inner)
}
