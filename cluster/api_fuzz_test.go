package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// The fuzz targets in this file send arbitrary bytes as the body of every
// POST endpoint (docs/security.md, "Who may call what") through the real
// handler of a real single-node cluster: one agent per fuzz process,
// started before f.Fuzz, on 127.0.0.1 with real TCP, TLS and Raft. The
// operator routes are called as root on the socket, the peer routes with
// the node's own certificate. Every input must get an answer that names
// what was wrong (never a 500: that is an unchecked input reaching an
// internal error), an operator change that succeeds must be audited, and
// afterwards the node must still lead with a replicated state that passes
// its own checks.

// fuzzNodeName is the one member of a fuzz cluster.
const fuzzNodeName = "node1"

// fuzzGhost is a GPU member record with no agent behind it (its ports
// refuse connections) and no Raft voter: a node whose join is recorded but
// which never started, or has died. Targets that name members get it, so
// that a fuzzed name can reach the paths for another member.
var fuzzGhost = fsm.Member{Name: "ghost", Role: fsm.RoleGPU, RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"}

// fuzzTokenID is a join token every fuzz cluster holds, so that a revoke
// has something to find.
const fuzzTokenID = "fuzz01"

// fuzzStatuses are the answers an API call may give (api.go errorCodes,
// plus 307 to the leader and 429 from the join limiter).
var fuzzStatuses = map[int]bool{200: true, 307: true, 400: true, 401: true, 403: true, 404: true, 409: true, 429: true, 503: true}

// fuzzNode is the agent of a fuzz cluster and its two APIs.
type fuzzNode struct {
	a     *Agent
	clock *testClock
	op    *http.ServeMux // the operator API, as root on the socket
	peer  *http.ServeMux // the peer API
	ghost bool
	// self is node1's member record as the cluster started.
	self fsm.Member
	// prev is the state before the input being tried.
	prev fsm.State
}

// fuzzRoute says how a target calls its endpoint and what more it checks.
type fuzzRoute struct {
	path string
	// peer: call the peer API with the node's certificate; else the
	// operator API as root.
	peer bool
	// audited: a 200 must have recorded an "operator" event.
	audited bool
	// ghost: the cluster holds fuzzGhost (restored after each input).
	ghost bool
	// seeds are the corpus: valid and near-valid bodies.
	seeds func(n *fuzzNode) []string
	// body, if set, makes the body from the fuzzed bytes.
	body func(b []byte) []byte
	// check, if set, checks an answer further.
	check func(t *testing.T, n *fuzzNode, body []byte, w *httptest.ResponseRecorder)
	// after, if set, undoes what an input changed, to keep the state small.
	after func(t *testing.T, n *fuzzNode)
}

// fuzzAPI runs one endpoint's fuzz target.
func fuzzAPI(f *testing.F, rt fuzzRoute) {
	n := newFuzzNode(f, rt.ghost)
	for _, s := range rt.seeds(n) {
		f.Add([]byte(s))
		f.Add([]byte(s + "x"))
		f.Add([]byte(s + " {}"))
	}
	for _, s := range []string{"", " ", "null", "{}", "[]", "1", `"x"`, `{"x":1}`, "{", "\xff"} {
		f.Add([]byte(s))
	}
	f.Add(bytes.Repeat([]byte(" "), maxBody+1))
	f.Fuzz(func(t *testing.T, body []byte) {
		if rt.body != nil {
			body = rt.body(body)
		}
		n.prev = n.a.FSM().State()
		before := n.prev.LastIndex
		w := n.call(rt.path, body, rt.peer)
		n.checkAnswer(t, rt.path, body, w)
		if rt.audited && w.Code == http.StatusOK {
			n.checkAudited(t, rt.path, body, before)
		}
		if rt.check != nil {
			rt.check(t, n, body, w)
		}
		n.checkState(t, rt.path, body)
		if rt.after != nil {
			rt.after(t, n)
		}
	})
}

// newFuzzNode initialises and starts a one-node cluster in f's temp dir,
// as helpers_test.go's testCluster does for a *testing.T, and waits until
// the node leads and is active.
// inertHooks answers every hook at once without running or sending
// anything.
type inertHooks struct{}

func (inertHooks) Run(context.Context, []string, []string, []byte) ([]byte, error) { return nil, nil }
func (inertHooks) Do(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Body: http.NoBody}, nil
}

func newFuzzNode(f *testing.F, ghost bool) *fuzzNode {
	f.Helper()
	dir := f.TempDir()
	log := logging.Discard()
	if _, err := Init(context.Background(), InitOptions{DataDir: dir, Name: fuzzNodeName, Advertise: "127.0.0.1",
		Ports: fuzzPorts(f), Raft: testTimings(), Logger: log}); err != nil {
		f.Fatalf("init: %v", err)
	}
	cfg, err := LoadNodeConfig(filepath.Join(dir, ConfigFileName))
	if err != nil {
		f.Fatalf("load config: %v", err)
	}
	clock := &testClock{}
	a, err := Start(Config{DataDir: dir, Node: cfg, Logger: log, Now: clock.Now, ApplyTimeout: 2 * time.Second,
		PeerTimeout: time.Second, AdmitRetry: 100 * time.Millisecond, Drill: fuzzDrill, ServiceFault: fuzzServiceFault,
		// Fuzzed settings may hold hooks: they run nothing.
		HookRunner: inertHooks{}, HookDoer: inertHooks{}})
	if err != nil {
		f.Fatalf("start: %v", err)
	}
	f.Cleanup(func() { _ = a.Close() })
	n := &fuzzNode{a: a, clock: clock, op: http.NewServeMux(), peer: http.NewServeMux(), ghost: ghost}
	(&operatorAPI{a: a, local: true}).routes(n.op)
	(&peerAPI{a: a}).routes(n.peer)
	fuzzWait(f, 10*time.Second, "node1 to lead and be active", func() error {
		if !a.IsLeader() {
			return fmt.Errorf("node1 is %s", a.RaftState())
		}
		if act, _ := a.FSM().ActiveView(); act.Node != fuzzNodeName {
			return fmt.Errorf("active is %q", act.Node)
		}
		return nil
	})
	now := clock.Now().UTC()
	tok := fsm.Token{ID: fuzzTokenID, SecretHash: strings.Repeat("ab", 32), CreatedAt: now, Expires: now.Add(DefaultTokenTTL),
		Role: fsm.RoleGPU, UsesAllowed: 1}
	if err := a.applyHere(fsm.CreateToken{Token: tok}); err != nil {
		f.Fatalf("create token %s: %v", fuzzTokenID, err)
	}
	if ghost {
		if err := a.applyHere(fsm.UpsertMember{Member: fuzzGhost}); err != nil {
			f.Fatalf("add %s: %v", fuzzGhost.Name, err)
		}
	}
	n.self, _ = a.FSM().Member(fuzzNodeName)
	return n
}

// fuzzDrill stands in for cmd's drill hook: it knows two checks.
func fuzzDrill(check string, _ bool, _ time.Time) error {
	switch check {
	case "gpu", "http:model":
		return nil
	}
	return fmt.Errorf("no check %q", check)
}

// fuzzServiceFault stands in for cmd's service fault hook. What the API
// lets through must be a known fault, a status only for errors and within
// 400-599, and an end within the bound: anything else panics, which fails
// the fuzz target.
func fuzzServiceFault(_ context.Context, fault string, status int, until time.Time) error {
	switch fault {
	case ServiceFaultStop, ServiceFaultPause:
		if status != 0 {
			panic(fmt.Sprintf("drill service: status %d reached the hook for %s", status, fault))
		}
	case ServiceFaultErrors:
		if status < 400 || status > 599 {
			panic(fmt.Sprintf("drill service: status %d reached the hook", status))
		}
	default:
		panic(fmt.Sprintf("drill service: fault %q reached the hook", fault))
	}
	if d := time.Until(until); !until.IsZero() && (d <= 0 || d > MaxServiceFault+time.Minute) {
		panic(fmt.Sprintf("drill service: an end %v from now reached the hook", d))
	}
	return nil
}

// fuzzPorts finds three free TCP ports on 127.0.0.1.
func fuzzPorts(tb testing.TB) Ports {
	tb.Helper()
	var ps []int
	for len(ps) < 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("find a free port: %v", err)
		}
		defer ln.Close()
		ps = append(ps, ln.Addr().(*net.TCPAddr).Port)
	}
	return Ports{API: ps[0], Raft: ps[1], Gossip: ps[2]}
}

// fuzzWait is waitFor for any testing.TB.
func fuzzWait(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// call POSTs body to path in-process: on the operator API as root, or on
// the peer API with the node's own certificate.
func (n *fuzzNode) call(path string, body []byte, peer bool) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)).WithContext(ctx)
	r.Header.Set("Content-Type", "application/json")
	h := n.op
	if peer {
		h = n.peer
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{n.a.bundle.NodeCert}}}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// checkAnswer checks the status and the shape of an answer.
func (n *fuzzNode) checkAnswer(t *testing.T, path string, body []byte, w *httptest.ResponseRecorder) {
	t.Helper()
	if !fuzzStatuses[w.Code] {
		t.Fatalf("POST %s %q: status %d, want 200, 307, 400, 401, 403, 404, 409, 429 or 503: %s", path, body, w.Code, w.Body)
	}
	switch w.Code {
	case http.StatusOK:
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("POST %s %q: 200 with a body that is not JSON: %q", path, body, w.Body)
		}
	case http.StatusTemporaryRedirect:
		if w.Header().Get("Location") == "" {
			t.Fatalf("POST %s %q: 307 without a Location", path, body)
		}
	default:
		var eb ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error == "" {
			t.Fatalf("POST %s %q: %d with a body that is no ErrorBody with an error (%v): %q", path, body, w.Code, err, w.Body)
		}
	}
}

// checkAudited checks that an operator change answered 200 committed an
// "operator" event by root after index before.
func (n *fuzzNode) checkAudited(t *testing.T, path string, body []byte, before uint64) {
	t.Helper()
	evs := n.a.FSM().State().Events
	for i := len(evs) - 1; i >= 0 && evs[i].Index > before; i-- {
		if evs[i].Kind == "operator" && strings.HasPrefix(evs[i].Detail, "root@"+fuzzNodeName+": ") {
			return
		}
	}
	t.Fatalf("POST %s %q: 200, but no operator event was recorded after index %d", path, body, before)
}

// checkState checks that the node still leads, with a state that passes
// its own checks: its member record, valid member names and roles, token
// records under their IDs, and settings that decode, validate, and come
// back the same through the YAML that `config show` prints.
func (n *fuzzNode) checkState(t *testing.T, path string, body []byte) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after POST %s %q: %s", path, body, fmt.Sprintf(format, args...))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !n.a.IsLeader() {
		if time.Now().After(deadline) {
			fail("%s is %s, no longer the leader", fuzzNodeName, n.a.RaftState())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := n.a.FSM().State()
	if m, ok := st.Members[fuzzNodeName]; !ok || m.Role != fsm.RoleGPU {
		fail("the member record of %s is %+v (present %v)", fuzzNodeName, m, ok)
	}
	for name, m := range st.Members {
		if name != m.Name || !fsm.ValidName(name) || !m.Role.Valid() {
			fail("member %q: record %+v", name, m)
		}
	}
	for id, tok := range st.Tokens {
		if id != tok.ID {
			fail("token %q is stored under %q", tok.ID, id)
		}
	}
	s, err := decodeSettings(st.Settings)
	if err != nil {
		fail("replicated settings: %v", err)
	}
	if err := s.Validate(); err != nil {
		fail("replicated settings do not validate: %v", err)
	}
	y, err := s.YAML()
	if err != nil {
		fail("render settings: %v", err)
	}
	again, err := ParseSettings(y)
	if err != nil {
		fail("config show prints YAML that config apply refuses: %v\n%s", err, y)
	}
	if a, b := mustJSON(t, s), mustJSON(t, again); !bytes.Equal(a, b) {
		fail("settings change through their YAML:\n%s\n%s", a, b)
	}
	if n.ghost {
		if _, ok := st.Members[fuzzGhost.Name]; !ok {
			if err := n.a.applyHere(fsm.UpsertMember{Member: fuzzGhost}); err != nil {
				fail("add %s again: %v", fuzzGhost.Name, err)
			}
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	return b
}

// decodeAs decodes body the way the handler did; ok is false if it did not.
func decodeAs[T any](body []byte) (T, bool) {
	var v T
	err := decodeBody(bytes.NewReader(body), &v)
	return v, err == nil
}

// FuzzFailoverRequest fuzzes POST /v1/failover. The only other GPU member
// is the ghost, which cannot answer, so no input moves the active role.
func FuzzFailoverRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/failover", audited: true, ghost: true, seeds: func(*fuzzNode) []string {
		return []string{`{"to":"ghost"}`, `{"to":"ghost","force":true,"reason":"manual:drill"}`, `{"to":"node1"}`,
			`{"to":"nobody","force":false}`, `{"to":"ghost","reason":"stop:node1"}`, `{"to":"ghost","force":"yes"}`,
			`{"to":"","reason":"manual:"}`, `{"to":"Ghost"}`}
	}})
}

// FuzzMaintenanceRequest fuzzes POST /v1/maintenance.
func FuzzMaintenanceRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/maintenance", audited: true, seeds: func(*fuzzNode) []string {
		return []string{`{"on":true}`, `{"on":false}`, `{"on":true,"reason":"manual:upgrade"}`, `{"on":false,"reason":""}`,
			`{"on":"true"}`, `{"on":true,"reason":"` + strings.Repeat("r", fsm.MaxReasonLen+1) + `"}`, `{"reason":"\u0000"}`,
			// A reason whose audit detail is cut through a character:
			// the event was refused as invalid UTF-8 and lost.
			`{"on":true,"reason":"manual:` + strings.Repeat("é", 500) + `"}`}
	}})
}

// FuzzConfigRequest fuzzes POST /v1/config: the JSON body, and the YAML in
// it through ParseSettings and the settings validators. A settings
// document that is accepted must be what `config show` then prints.
func FuzzConfigRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/config", audited: true, seeds: func(*fuzzNode) []string {
		def, _ := DefaultSettings().YAML()
		docs := []string{"", string(def), "vip:\n  address: 10.0.0.100/24\n  garp_repeat: 3\n", "vip:\n  address: 127.0.0.1/8\n",
			"vip:\n  garp_repeat: 0\n", "unknown: 1\n", "timings:\n  expiry_slack: 100000h\n", "vip: [1, 2]\n", "- a\n- b\n",
			"vip:\n  address: &a 10.0.0.1/24\n  iface: *a\n", "timings: {lease: x}\n",
			"hooks:\n  - exec: {command: [/bin/true], retries: 0}\n  - webhook: {url: 'https://x/y', secret_file: /etc/s}\n", "hooks:\n  - exec: {command: [x]}\n"}
		var out []string
		for _, d := range docs {
			b, _ := json.Marshal(ConfigRequest{YAML: d})
			out = append(out, string(b))
		}
		return append(out, `{"yaml":1}`, `{"YAML":"vip: {}"}`)
	}, check: func(t *testing.T, n *fuzzNode, body []byte, w *httptest.ResponseRecorder) {
		if w.Code != http.StatusOK {
			return
		}
		var resp ConfigResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("POST /v1/config %q: 200 with %q: %v", body, w.Body, err)
		}
		live, err := decodeSettings(n.a.FSM().State().Settings)
		if err != nil {
			t.Fatalf("POST /v1/config %q: replicated settings: %v", body, err)
		}
		if a, b := mustJSON(t, resp.Settings), mustJSON(t, live); !bytes.Equal(a, b) {
			t.Fatalf("POST /v1/config %q: answered settings %s, replicated %s", body, a, b)
		}
	}})
}

// FuzzTokenCreateRequest fuzzes POST /v1/tokens. A token it answers must
// parse and be in the state with the role asked for.
func FuzzTokenCreateRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/tokens", audited: true, seeds: func(*fuzzNode) []string {
		return []string{`{}`, `{"ttl":"1h"}`, `{"ttl":"24h","role":"witness","uses":3}`, `{"ttl":"169h"}`, `{"ttl":"-1s"}`,
			`{"ttl":"0s","role":"gpu","uses":100}`, `{"uses":101}`, `{"uses":-1}`, `{"role":"operator"}`, `{"ttl":3600}`,
			`{"ttl":"1e3h"}`, `{"uses":1e400}`}
	}, check: func(t *testing.T, n *fuzzNode, body []byte, w *httptest.ResponseRecorder) {
		if w.Code != http.StatusOK {
			return
		}
		var resp TokenResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("POST /v1/tokens %q: 200 with %q: %v", body, w.Body, err)
		}
		tok, err := pki.ParseToken(resp.Token)
		if err != nil {
			t.Fatalf("POST /v1/tokens %q: token %q does not parse: %v", body, resp.Token, err)
		}
		rec, ok := n.a.FSM().State().Tokens[tok.ID]
		if !ok || rec.Role != resp.Role || !rec.Role.Valid() || rec.UsesAllowed < 1 || rec.UsesAllowed > fsm.MaxTokenUses {
			t.Fatalf("POST /v1/tokens %q: token %s is recorded as %+v (present %v), answered role %q", body, tok.ID, rec, ok, resp.Role)
		}
	}, after: func(_ *testing.T, n *fuzzNode) {
		// Tokens leave the state only when the next CreateToken finds them
		// expired: move the clock past their lifetime now and then.
		if len(n.a.FSM().State().Tokens) > 50 {
			n.clock.Advance(MaxTokenTTL + time.Minute)
		}
	}})
}

// FuzzTokenRevokeRequest fuzzes POST /v1/tokens/revoke; the state holds
// token fuzz01.
func FuzzTokenRevokeRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/tokens/revoke", audited: true, seeds: func(*fuzzNode) []string {
		return []string{`{"id":"` + fuzzTokenID + `"}`, `{"id":"abc123"}`, `{"id":""}`, `{"id":"FUZZ01"}`, `{"id":"fuzz012"}`,
			`{"id":"fuzz0\u0000"}`, `{"id":1}`}
	}})
}

// FuzzRemoveRequest fuzzes POST /v1/remove with the ghost in the state
// (added again after each input that removed it). The node's own name is
// left out: removing the only voter is not refused (see the report of
// issue 9's fuzz work) and would end the fuzz cluster.
func FuzzRemoveRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/remove", audited: true, ghost: true, seeds: func(*fuzzNode) []string {
		return []string{`{"name":"ghost"}`, `{"name":"nobody"}`, `{"name":""}`, `{"name":"Ghost"}`, `{"name":"-ghost"}`,
			`{"name":"` + strings.Repeat("g", 64) + `"}`, `{"name":null}`,
			// The last voter: refused before anything is written (it was a
			// 500 after its member record was gone).
			`{"name":"node1"}`}
	}})
}

// FuzzTransferLeaderRequest fuzzes POST /v1/raft/transfer-leader with the
// ghost, a member that is no Raft voter, in the state.
func FuzzTransferLeaderRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/raft/transfer-leader", audited: true, ghost: true, seeds: func(*fuzzNode) []string {
		return []string{`{"to":"node1"}`, `{"to":"ghost"}`, `{"to":"nobody"}`, `{"to":""}`, `{"to":"NODE1"}`, `{"to":["node1"]}`}
	}})
}

// FuzzDrillRequest fuzzes POST /v1/drill/inject: on this node (whose drill
// hook knows the checks "gpu" and "http:model") and on the ghost, which is
// unreachable.
func FuzzDrillRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/drill/inject", audited: true, ghost: true, seeds: func(*fuzzNode) []string {
		return []string{`{"check":"gpu","passing":false,"for":"30s"}`, `{"node":"node1","check":"http:model","passing":true,"for":"1h"}`,
			`{"node":"ghost","check":"gpu","for":"10s"}`, `{"node":"nobody","check":"gpu","for":"10s"}`, `{"check":"gpu","for":"0s"}`,
			`{"check":"gpu","for":"61m"}`, `{"check":"disk","for":"1m"}`, `{"check":"gpu","for":"-1ns"}`, `{"check":"gpu","for":10}`,
			`{"check":"gpu","clear":true}`, `{"check":"disk","clear":true}`, `{"node":"ghost","check":"gpu","clear":true}`}
	}})
}

// FuzzDrillServiceRequest fuzzes POST /v1/drill/service: whatever reaches
// the hook is a valid fault (fuzzServiceFault panics otherwise), and no
// input is answered with a server error.
func FuzzDrillServiceRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/drill/service", audited: true, ghost: true, seeds: func(*fuzzNode) []string {
		return []string{`{"node":"node1","fault":"stop","for":"30s"}`, `{"node":"node1","fault":"pause","for":"1h"}`,
			`{"node":"node1","fault":"errors","status":503,"for":"10s"}`, `{"node":"node1","fault":"errors","for":"10s"}`,
			`{"node":"node1","fault":"stop","clear":true}`, `{"node":"ghost","fault":"stop","for":"10s"}`,
			`{"node":"nobody","fault":"stop","for":"10s"}`, `{"fault":"stop","for":"10s"}`, `{"node":"node1","fault":"stop","for":"0s"}`,
			`{"node":"node1","fault":"stop","for":"61m"}`, `{"node":"node1","fault":"errors","status":200,"for":"1m"}`,
			`{"node":"node1","fault":"pause","status":500,"for":"1m"}`, `{"node":"node1","fault":"explode","for":"1m"}`}
	}, check: func(t *testing.T, n *fuzzNode, body []byte, w *httptest.ResponseRecorder) {
		if w.Code == http.StatusInternalServerError {
			t.Fatalf("POST /v1/drill/service %q: 500 %s", body, w.Body.String())
		}
	}})
}

// FuzzDrillEventRequest fuzzes POST /v1/drill/event. An event it records
// must read back (ParseDrillEvent) as the drill it was given.
func FuzzDrillEventRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/drill/event", seeds: func(*fuzzNode) []string {
		return []string{`{"id":"run-1","runbook":"active-dies","phase":"start","until":"2026-12-01T22:00:00Z"}`,
			`{"id":"run-1","runbook":"active-dies","phase":"end","summary":"passed: 3 steps\nall good"}`,
			`{"id":"run-1","runbook":"active-dies","phase":"end"}`, `{"id":"run 1","runbook":"x","phase":"end"}`,
			`{"id":"r","runbook":"Active","phase":"end"}`, `{"id":"r","runbook":"x","phase":"start"}`,
			`{"id":"r","runbook":"x","phase":"middle"}`, `{"id":"r","runbook":"x","phase":"start","until":"0001-01-01T00:00:00+01:00"}`,
			`{"id":"r","runbook":"x","phase":"end","summary":"` + strings.Repeat("é", fsm.MaxReasonLen) + `"}`,
			// Years that leave 1..9999 in UTC: recorded, never read back.
			`{"id":"r","runbook":"x","phase":"start","until":"9999-12-31T23:30:00-01:00"}`,
			`{"id":"r","runbook":"x","phase":"start","until":"0000-01-01T00:00:00+01:00"}`}
	}, check: func(t *testing.T, n *fuzzNode, body []byte, w *httptest.ResponseRecorder) {
		if w.Code != http.StatusOK {
			return
		}
		req, _ := decodeAs[DrillEventRequest](body)
		evs := n.a.FSM().State().Events
		if len(evs) == 0 {
			t.Fatalf("POST /v1/drill/event %q: 200, but no event", body)
		}
		got, by, ok := ParseDrillEvent(evs[len(evs)-1])
		switch {
		case !ok:
			t.Fatalf("POST /v1/drill/event %q: recorded %+v, which does not read back as a drill", body, evs[len(evs)-1])
		case by != "root@"+fuzzNodeName || got.ID != req.ID || got.Phase != req.Phase:
			t.Fatalf("POST /v1/drill/event %q: reads back as %+v by %q", body, got, by)
		case req.Phase == DrillPhaseStart && (got.Runbook != req.Runbook || !got.Until.Equal(req.Until)):
			t.Fatalf("POST /v1/drill/event %q: start reads back as %+v", body, got)
		}
	}})
}

// FuzzOperatorCertRequest fuzzes POST /v1/operator/cert. A certificate it
// answers must be an operator certificate for the name asked for.
func FuzzOperatorCertRequest(f *testing.F) {
	key, err := pki.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	pemKey, err := pki.EncodePublicKey(&key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	pub, _ := json.Marshal(string(pemKey))
	fuzzAPI(f, fuzzRoute{path: "/v1/operator/cert", audited: true, seeds: func(*fuzzNode) []string {
		return []string{`{"name":"alice","ttl":"8h","public_key":` + string(pub) + `}`, `{"name":"alice","public_key":` + string(pub) + `}`,
			`{"name":"bob","ttl":"59s","public_key":` + string(pub) + `}`, `{"name":"alice","ttl":"1000h","public_key":` + string(pub) + `}`,
			`{"name":"root@node1","public_key":` + string(pub) + `}`, `{"name":"","public_key":` + string(pub) + `}`,
			`{"name":"alice","public_key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}`, `{"name":"alice"}`}
	}, check: func(t *testing.T, _ *fuzzNode, body []byte, w *httptest.ResponseRecorder) {
		if w.Code != http.StatusOK {
			return
		}
		req, _ := decodeAs[OperatorCertRequest](body)
		var resp OperatorCertResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("POST /v1/operator/cert %q: 200 with %q: %v", body, w.Body, err)
		}
		cert, err := pki.ParseCert([]byte(resp.Cert))
		if err != nil {
			t.Fatalf("POST /v1/operator/cert %q: certificate does not parse: %v", body, err)
		}
		if cert.Subject.CommonName != req.Name || pki.Role(cert) != pki.RoleOperator {
			t.Fatalf("POST /v1/operator/cert %q: certificate for %q with role %q", body, cert.Subject.CommonName, pki.Role(cert))
		}
	}})
}

// FuzzInternalApply fuzzes POST /v1/internal/apply as node1: a base64
// command through fsm.Decode and the peer command policy. An input that
// starts with '{' is the body; any other is the encoded command itself,
// sent in base64, so that mutations reach the command rather than its
// base64 text. Whatever is committed must be a RecordEvent about node1, or
// an UpsertMember for a new member or one that renews a member's
// certificates only (renew.go); members it adds are removed again, and
// node1's record is put back.
func FuzzInternalApply(f *testing.F) {
	wrap := func(b []byte) []byte {
		if len(b) > 0 && b[0] == '{' {
			return b
		}
		body, _ := json.Marshal(applyBody{Command: base64.StdEncoding.EncodeToString(b)})
		return body
	}
	enc := func(c fsm.Command) string {
		data, err := fsm.Encode(c)
		if err != nil {
			f.Fatalf("encode %T: %v", c, err)
		}
		return string(data)
	}
	fuzzAPI(f, fuzzRoute{path: "/v1/internal/apply", peer: true, body: wrap, seeds: func(n *fuzzNode) []string {
		now := n.clock.Now().UTC()
		node2 := fsm.Member{Name: "node2", Role: fsm.RoleGPU, RaftAddr: "127.0.0.2:7701", APIAddr: "127.0.0.2:7700",
			GossipAddr: "127.0.0.2:7702", JoinedAt: now}
		self, _ := n.a.FSM().Member(fuzzNodeName)
		taken := node2
		taken.Name, taken.APIAddr = "node3", self.APIAddr
		tok := fsm.Token{ID: "abc123", SecretHash: strings.Repeat("cd", 32), CreatedAt: now, Expires: now.Add(time.Hour),
			Role: fsm.RoleGPU, UsesAllowed: 1}
		return []string{
			enc(fsm.RecordEvent{Event: fsm.Event{Kind: "drill", Node: fuzzNodeName, Detail: "forced", Time: now}}),
			enc(fsm.RecordEvent{Event: fsm.Event{Kind: "drill", Node: "node2", Detail: "forced", Time: now}}),
			enc(fsm.UpsertMember{Member: node2}),
			enc(fsm.UpsertMember{Member: node2, TokenID: fuzzTokenID}),
			enc(fsm.UpsertMember{Member: self}),
			enc(fsm.UpsertMember{Member: taken}),
			enc(fsm.CreateToken{Token: tok}),
			enc(fsm.SetMaintenance{On: true, Time: now, Reason: "manual:x"}),
			enc(fsm.RemoveMember{Name: fuzzNodeName}),
			enc(fsm.SetActive{Node: "", Epoch: 1 << 40, Time: now, Reason: "manual:x"}),
			`{"command":"not base64!"}`, `{"command":""}`, `{"command":"AA=="}`, `{"command":"/w=="}`,
		}
	}, check: func(t *testing.T, n *fuzzNode, body []byte, w *httptest.ResponseRecorder) {
		if w.Code != http.StatusOK {
			return
		}
		req, _ := decodeAs[applyBody](body)
		data, _ := base64.StdEncoding.DecodeString(req.Command)
		cmd, err := fsm.Decode(data)
		if err != nil {
			t.Fatalf("POST /v1/internal/apply %q: 200 for a command that does not decode: %v", body, err)
		}
		switch c := cmd.(type) {
		case fsm.RecordEvent:
			if c.Event.Node != fuzzNodeName {
				t.Fatalf("POST /v1/internal/apply %q: 200 for an event about %q from %s", body, c.Event.Node, fuzzNodeName)
			}
		case fsm.UpsertMember:
			if cur, ok := n.prev.Members[c.Member.Name]; ok && !isRenewal(cur, c.Member) {
				t.Fatalf("POST /v1/internal/apply %q: 200 for a record that changes member %+v to %+v", body, cur, c.Member)
			}
		default:
			t.Fatalf("POST /v1/internal/apply %q: 200 for a %T", body, cmd)
		}
	}, after: func(t *testing.T, n *fuzzNode) {
		for name, m := range n.a.FSM().State().Members {
			switch {
			case name != fuzzNodeName:
				if err := n.a.removeMember(name); err != nil {
					t.Fatalf("remove %s again: %v", name, err)
				}
			case !reflect.DeepEqual(m, n.self):
				if err := n.a.applyHere(fsm.UpsertMember{Member: n.self}); err != nil {
					t.Fatalf("put back the record of %s: %v", name, err)
				}
			}
		}
	}})
}

// FuzzVoterRequest fuzzes POST /v1/internal/voter as node1.
func FuzzVoterRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/internal/voter", peer: true, seeds: func(n *fuzzNode) []string {
		self, _ := n.a.FSM().Member(fuzzNodeName)
		addr, _ := json.Marshal(self.RaftAddr)
		return []string{`{"name":"node1","raft_addr":` + string(addr) + `}`, `{"name":"node1","raft_addr":"127.0.0.9:1"}`,
			`{"name":"node2","raft_addr":` + string(addr) + `}`, `{"name":"node1"}`, `{"name":"","raft_addr":""}`}
	}})
}

// FuzzLeaseRequest fuzzes POST /v1/internal/lease as node1, to node1's own
// voter. An answer must echo the request, and grant only the active node
// at its epoch.
func FuzzLeaseRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/internal/lease", peer: true, seeds: func(n *fuzzNode) []string {
		act, _ := n.a.FSM().ActiveView()
		e := strconv.FormatUint(act.Epoch, 10)
		return []string{`{"from":"node1","epoch":` + e + `,"nonce":1,"duration":2000000000}`,
			`{"from":"node1","epoch":` + e + `,"nonce":1,"release":true}`, `{"from":"node2","epoch":1,"nonce":1,"duration":1}`,
			`{"from":"node1","epoch":0,"nonce":1,"duration":1000000000}`, `{"from":"node1","epoch":18446744073709551615,"nonce":1,"duration":1}`,
			`{"from":"node1","epoch":1,"nonce":1,"duration":-1}`, `{"from":"node1","epoch":1,"duration":"2s"}`}
	}, check: func(t *testing.T, n *fuzzNode, body []byte, w *httptest.ResponseRecorder) {
		if w.Code != http.StatusOK {
			return
		}
		req, _ := decodeAs[lease.Request](body)
		var ans lease.Answer
		if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
			t.Fatalf("POST /v1/internal/lease %q: 200 with %q: %v", body, w.Body, err)
		}
		if req.Release {
			return // a release gets no answer
		}
		if ans.Voter != fuzzNodeName || ans.To != req.From || ans.Epoch != req.Epoch || ans.Nonce != req.Nonce {
			t.Fatalf("POST /v1/internal/lease %q: answer %+v does not echo the request", body, ans)
		}
		if act, _ := n.a.FSM().ActiveView(); ans.Granted && (req.From != act.Node || req.Epoch != act.Epoch) {
			t.Fatalf("POST /v1/internal/lease %q: granted, but %q is active at epoch %d", body, act.Node, act.Epoch)
		}
	}})
}

// FuzzHandoverRequest fuzzes POST /v1/internal/handover as node1, the
// active node, with the unreachable ghost as the only other GPU member.
func FuzzHandoverRequest(f *testing.F) {
	fuzzAPI(f, fuzzRoute{path: "/v1/internal/handover", peer: true, ghost: true, seeds: func(*fuzzNode) []string {
		return []string{`{"to":"ghost"}`, `{"to":"node1"}`, `{"to":"nobody"}`, `{"to":""}`, `{"to":"GHOST"}`}
	}})
}
