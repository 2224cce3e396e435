package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"testing"
	"time"
)

// With web_operator_cert the metrics address speaks TLS with the node
// certificate: the page answers operator certificates only (401 without a
// certificate, 403 for a node's), while /metrics stays open to any
// client, and plain HTTP gets no page.
func TestWeb_OperatorCertificateRequiredForThePage(t *testing.T) {
	c := newTestCluster(t)
	addr := freeAddr(t, "127.0.0.1")
	c.configure = func(name string, cfg *Config) {
		cfg.Node.MetricsAddr, cfg.Node.Web, cfg.Node.WebOperatorCert = addr, true, true
		cfg.Web = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "the page") })
	}
	n1 := c.init("node1", "127.0.0.1")
	ca := n1.agent.bundle.CA
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	get := func(cl *http.Client, url string) (int, string) {
		t.Helper()
		resp, err := cl.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	node := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: n1.agent.bundle.ClientConfig()}}
	op := operatorClient(t, ca, "alice")
	base := "https://" + addr

	if code, body := get(op, base+"/"); code != http.StatusOK || body != "the page" {
		t.Fatalf("operator: %d %q", code, body)
	}
	if code, body := get(noCert, base+"/"); code != http.StatusUnauthorized {
		t.Fatalf("no certificate: %d %q, want 401", code, body)
	}
	if code, body := get(node, base+"/ui/state"); code != http.StatusForbidden {
		t.Fatalf("node certificate: %d %q, want 403", code, body)
	}
	if code, body := get(noCert, base+"/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics without a certificate: %d %q, want 200", code, body)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, body := get(plain, "http://"+addr+"/"); code == http.StatusOK && body == "the page" {
		t.Fatal("the page over plain HTTP")
	}
}
