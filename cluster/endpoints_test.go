package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// identities of the endpoint table, in its column order.
var tableIdentities = []string{"root (socket)", "operator", "GPU node", "witness", "removed node", "no certificate", "expired certificate"}

// readEndpointTable parses the endpoint table of docs/security.md: route
// -> identity -> cell.
func readEndpointTable(t *testing.T) map[string]map[string]string {
	t.Helper()
	b, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "<!-- endpoint table")
	if !ok {
		t.Fatal("docs/security.md has no endpoint table marker")
	}
	lines := strings.Split(after, "\n")[1:]
	header := splitRow(lines[0])
	if strings.Join(header[1:], "|") != strings.Join(tableIdentities, "|") {
		t.Fatalf("endpoint table columns %q, want %q", header[1:], tableIdentities)
	}
	table := map[string]map[string]string{}
	for _, l := range lines[2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := splitRow(l)
		route := strings.Trim(cells[0], "`")
		row := map[string]string{}
		for i, id := range tableIdentities {
			row[id] = cells[i+1]
		}
		table[route] = row
	}
	return table
}

func splitRow(l string) []string {
	parts := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// patternRecorder lists the routes a handler type registers.
type patternRecorder []string

func (p *patternRecorder) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	*p = append(*p, pattern)
}

// operatorClient is an HTTPS client with an operator certificate for name.
func operatorClient(t *testing.T, ca *pki.CA, name string) *http.Client {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueOperator(name, time.Hour, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.OperatorClientConfig(ca.Cert, cert, key)}}
}

// expiredClient presents a certificate the CA signed for a current member
// (CN, role) that expired an hour ago.
func expiredClient(t *testing.T, ca *pki.CA, name, role string) *http.Client {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{role}},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.OperatorClientConfig(ca.Cert, cert, key)}}
}

// endpointBody is a request body for route as identity self, naming self
// (own) or another member: each is harmless when allowed (it fails
// validation or changes nothing), so the table can be walked on one
// cluster.
func endpointBody(t *testing.T, route, self, other, selfRaft string) []byte {
	t.Helper()
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	switch route {
	case "POST /v1/config":
		return enc(ConfigRequest{YAML: "not: [valid"})
	case "POST /v1/tokens":
		return []byte(`{"ttl":"-1s"}`)
	case "POST /v1/tokens/revoke":
		return []byte(`{"id":"zzzzzz"}`)
	case "POST /v1/remove":
		return enc(RemoveRequest{Name: "Not A Name"})
	case "POST /v1/failover", "POST /v1/raft/transfer-leader":
		return []byte(`{"to":"nobody"}`)
	case "POST /v1/maintenance":
		return enc(MaintenanceRequest{On: false, Reason: "manual:endpoint table"})
	case "POST /v1/drill/inject":
		return []byte(`{"check":"x","passing":true,"for":"0s"}`)
	case "POST /v1/drill/event":
		return []byte(`{"id":"x","runbook":"x","phase":"neither"}`)
	case "POST /v1/drill/partition":
		return []byte(`{"from":["nobody"],"for":"0s"}`)
	case "POST /v1/drill/service":
		return []byte(`{"node":"nobody","fault":"stop","for":"0s"}`)
	case "POST /v1/drill/crash":
		return []byte(`{}`) // no node: refused before anything crashes
	case "POST /v1/operator/cert":
		return enc(OperatorCertRequest{Name: "Not A Name"})
	case "POST /v1/join":
		return []byte(`{}`)
	case "POST /v1/internal/apply":
		data, err := fsm.Encode(fsm.RecordEvent{Event: fsm.Event{Kind: "drill", Node: other, Detail: "endpoint table", Time: time.Now().UTC()}})
		if err != nil {
			t.Fatal(err)
		}
		return enc(applyBody{Command: base64.StdEncoding.EncodeToString(data)})
	case "POST /v1/internal/voter":
		return enc(VoterRequest{Name: other, RaftAddr: selfRaft})
	case "POST /v1/internal/lease":
		return enc(lease.Request{From: other, Epoch: 1, Nonce: 1}) // Duration 0: invalid
	case "POST /v1/internal/handover":
		return enc(HandoverRequest{To: other})
	}
	return nil
}

// authzRefused reports whether a response is an authorisation refusal
// (as opposed to any other answer of a handler that let the caller in).
func authzRefused(status int, body []byte) bool {
	var eb ErrorBody
	_ = json.Unmarshal(body, &eb)
	// 404 without an error code is the mux's: no such route here.
	return status == http.StatusUnauthorized || (status == http.StatusForbidden && eb.Code == "forbidden") || (status == http.StatusNotFound && eb.Code == "")
}

// Every endpoint, as every identity, answers as docs/security.md's table
// says (issue 9, item 1).
func TestEndpoints_EveryIdentityAgainstTheTable(t *testing.T) {
	table := readEndpointTable(t)
	var routes patternRecorder
	(&operatorAPI{}).routes(&routes)
	(&peerAPI{}).routes(&routes)
	sort.Strings(routes)
	for _, r := range routes {
		if table[r] == nil {
			t.Errorf("route %s is not in the endpoint table of docs/security.md", r)
		}
	}
	for r := range table {
		if !contains(routes, r) {
			t.Errorf("the endpoint table lists %s, which no handler serves", r)
		}
	}

	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	n2 := c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	w := c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	n3 := c.join("node3", "127.0.0.4", fsm.RoleGPU, "node1")
	ca := n1.agent.bundle.CA
	waitFor(t, 10*time.Second, "node1 active", func() error {
		if act, _ := n1.agent.FSM().ActiveView(); act.Node != "node1" {
			return fmt.Errorf("active is %q", act.Node)
		}
		return nil
	})
	removed := n3.agent.bundle
	c.stop("node3")
	if err := c.client("node1").Remove(t.Context(), "node3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "node3 gone on node2", func() error {
		if _, ok := n2.agent.FSM().Member("node3"); ok {
			return errors.New("still a member")
		}
		return nil
	})

	// Every remote identity calls node2, a follower: the operator's
	// changes are redirected to the leader, root's are carried there.
	type identity struct {
		client      *http.Client
		self, other string
		selfRaft    string
	}
	ids := map[string]identity{
		"root (socket)":       {client: socketHTTP(n2.dataDir), self: "node2", other: "witness"},
		"operator":            {client: operatorClient(t, ca, "alice"), self: "alice", other: "node1"},
		"GPU node":            {client: apiClient(n2.agent.bundle), self: "node2", other: "witness", selfRaft: n2.agent.cfg.Node.RaftAddr()},
		"witness":             {client: apiClient(w.agent.bundle), self: "witness", other: "node2", selfRaft: w.agent.cfg.Node.RaftAddr()},
		"removed node":        {client: apiClient(removed), self: "node3", other: "node1"},
		"no certificate":      {client: apiClient(nil), self: "", other: "node1"},
		"expired certificate": {client: expiredClient(t, ca, "node2", "gpu"), self: "node2", other: "node1"},
	}
	base := func(id string) string {
		if id == "root (socket)" {
			return "http://agent"
		}
		return "https://" + n2.agent.cfg.Node.APIAddr()
	}
	call := func(id identity, baseURL, route string, body []byte) (int, []byte, error) {
		method, path, _ := strings.Cut(route, " ")
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(t.Context(), method, baseURL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := id.client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, nil
	}
	for _, route := range routes {
		for _, name := range tableIdentities {
			id := ids[name]
			want := table[route][name]
			t.Run(strings.ReplaceAll(route, "/", "_")+"/"+name, func(t *testing.T) {
				other := endpointBody(t, route, id.self, id.other, id.selfRaft)
				own := endpointBody(t, route, id.self, id.self, id.selfRaft)
				status, raw, err := call(id, base(name), route, other)
				if name == "expired certificate" {
					var ue *tls.CertificateVerificationError
					if err == nil || !(strings.Contains(err.Error(), "certificate") || errors.As(err, &ue)) {
						t.Fatalf("want a refused handshake, got %d %s %v", status, raw, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				switch want {
				case "yes":
					if authzRefused(status, raw) {
						t.Fatalf("the table says yes; got %d %s", status, raw)
					}
				case "no", "active":
					if !authzRefused(status, raw) {
						t.Fatalf("the table says %s; got %d %s", want, status, raw)
					}
				case "own":
					if !authzRefused(status, raw) {
						t.Fatalf("for another's name: got %d %s, want a refusal", status, raw)
					}
					status, raw, err = call(id, base(name), route, own)
					if err != nil || authzRefused(status, raw) {
						t.Fatalf("for its own name: got %d %s %v, want it let in", status, raw, err)
					}
				default:
					t.Fatalf("cell %q: want yes, no, own or active", want)
				}
			})
		}
	}
}

// socketHTTP is a plain HTTP client of a member's local socket.
func socketHTTP(dataDir string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", SocketPath(dataDir))
	}}}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// The Raft port answers only servers of the current configuration: a
// removed node's certificate, still valid, and an operator certificate get
// the connection closed after the handshake, before raft reads a byte; a
// current member's stays open (issue 9, item 3).
func TestRaftPort_RefusesRemovedNodeAndOperatorCertificates(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	n2 := c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	n3 := c.join("node3", "127.0.0.4", fsm.RoleGPU, "node1")
	waitFor(t, 10*time.Second, "node3 a voter", func() error {
		if !isServer(n1.agent, "node3") {
			return errors.New("not yet")
		}
		return nil
	})
	removed := n3.agent.bundle
	c.stop("node3")
	if err := c.client("node1").Remove(t.Context(), "node3"); err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	opCert, err := n1.agent.bundle.CA.IssueOperator("alice", time.Hour, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !raftOpen(n1, n2.agent.bundle.ClientConfig()) {
		t.Fatal("node2, a current server, was refused")
	}
	if raftOpen(n1, removed.ClientConfig()) {
		t.Fatal("the removed node3's certificate kept a Raft connection open")
	}
	if raftOpen(n1, pki.OperatorClientConfig(n1.agent.bundle.CA.Cert, opCert, key)) {
		t.Fatal("an operator certificate kept a Raft connection open")
	}
}

func isServer(a *Agent, name string) bool {
	f := a.node.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == name {
			return true
		}
	}
	return false
}
