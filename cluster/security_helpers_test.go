package cluster

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// Helpers of the security tests (issue 9): raw API calls with a chosen
// TLS identity, and commands framed without validation.

// joinBody is a well-formed join request with a fresh public key.
func joinBody(t *testing.T, token, name, ip string, role fsm.Role) JoinRequest {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.EncodePublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return JoinRequest{Token: token, Name: name, Role: role, Advertise: ip, Ports: Ports{API: 17700, Raft: 17701, Gossip: 17702}, PublicKey: string(pub)}
}

// apiClient calls a member's API with the TLS identity of bundle, or with
// none (and no server verification) when bundle is nil.
func apiClient(bundle *pki.Bundle) *http.Client {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if bundle != nil {
		cfg = bundle.ClientConfig()
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// apiClientFrom is apiClient with connections made from the local
// address ip (a loopback address), as another host would.
func apiClientFrom(bundle *pki.Bundle, ip string) *http.Client {
	c := apiClient(bundle)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c.Transport.(*http.Transport).DialContext = d.DialContext
	return c
}

// post sends body (any JSON value, or raw bytes) and returns the status and
// the decoded error body.
func post(t *testing.T, client *http.Client, url string, body any, header ...string) (int, ErrorBody, []byte) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var eb ErrorBody
	_ = json.Unmarshal(out, &eb)
	return resp.StatusCode, eb, out
}

func joinURL(n *testNode) string { return "https://" + n.agent.cfg.Node.APIAddr() + "/v1/join" }

// internalApply sends an encoded command to /v1/internal/apply of n with
// the certificate of from.
func internalApply(t *testing.T, from, n *testNode, data []byte) (int, []byte) {
	t.Helper()
	status, _, raw := post(t, apiClient(from.agent.bundle), "https://"+n.agent.cfg.Node.APIAddr()+"/v1/internal/apply",
		applyBody{Command: base64.StdEncoding.EncodeToString(data)})
	return status, raw
}

// rawCommand frames a command without fsm.Encode's validation, as a
// hostile member could.
func rawCommand(t *testing.T, typ fsm.Type, payload any) []byte {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{byte(typ), 1}, b...)
}
