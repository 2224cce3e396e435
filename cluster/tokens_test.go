package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// newJoiner returns a node that is not started, for c.tryJoin.
func newJoiner(t *testing.T, name, ip string, role fsm.Role) *testNode {
	return &testNode{name: name, role: role, ip: ip, dataDir: t.TempDir(), ports: freePorts(t, ip)}
}

func TestJoin_TokenWithOneUseAdmitsOneNodeOnly(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.client("node1").CreateTokenUses(ctx, time.Hour, fsm.RoleGPU, 1)
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	if err := c.tryJoin(newJoiner(t, "node2", "127.0.0.2", fsm.RoleGPU), "node1", resp.Token); err != nil {
		t.Fatalf("first join with a one-use token: %v", err)
	}
	err = c.tryJoin(newJoiner(t, "node3", "127.0.0.3", fsm.RoleWitness), "node1", resp.Token)
	if !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("second join with a one-use token: %v, want %v", err, ErrTokenInvalid)
	}
	st := n1.agent.FSM().State()
	if _, ok := st.Members["node3"]; ok {
		t.Fatal("node3 became a member")
	}
	id := strings.Split(resp.Token, ".")[1]
	if tok := st.Tokens[id]; tok.UsesAllowed != 1 || tok.UsesSpent != 1 {
		t.Fatalf("token %+v, want 1 of 1 uses spent", tok)
	}

	// The used-up token gets the one answer of every bad token.
	unknown := strings.Replace(resp.Token, "."+id+".", ".zzzzzz.", 1)
	var answers [][]byte
	for _, tok := range []string{resp.Token, unknown} {
		status, eb, raw := post(t, apiClient(nil), joinURL(n1), joinBody(t, tok, "node3", "127.0.0.3", fsm.RoleWitness))
		if status != http.StatusForbidden || eb.Code != "token_invalid" {
			t.Fatalf("status %d %s, want 403 token_invalid", status, raw)
		}
		answers = append(answers, raw)
	}
	if !bytes.Equal(answers[0], answers[1]) {
		t.Fatalf("a used-up token and an unknown one get different answers:\n%s\n%s", answers[0], answers[1])
	}

	infos := n1.agent.listTokens()
	var found bool
	for _, info := range infos {
		if info.ID == id {
			found = true
			if info.State != TokenUsedUp || info.UsesSpent != 1 || info.UsesAllowed != 1 {
				t.Fatalf("listed %+v, want used-up 1/1", info)
			}
		}
	}
	if !found {
		t.Fatalf("token %s not listed: %+v", id, infos)
	}
	b, _ := json.Marshal(infos)
	for _, tok := range st.Tokens {
		if bytes.Contains(b, []byte(tok.SecretHash)) || bytes.Contains(b, []byte("secret")) {
			t.Fatalf("the token list shows a secret hash: %s", b)
		}
	}
}

func TestJoin_RevokedTokenIsRefused(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.client("node1").CreateTokenUses(ctx, time.Hour, fsm.RoleGPU, 5)
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	id := strings.Split(resp.Token, ".")[1]
	if err := n1.agent.revokeToken(ctx, id); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	err = c.tryJoin(newJoiner(t, "node2", "127.0.0.2", fsm.RoleGPU), "node1", resp.Token)
	if !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("join with a revoked token: %v, want %v", err, ErrTokenInvalid)
	}
	st := n1.agent.FSM().State()
	if _, ok := st.Members["node2"]; ok {
		t.Fatal("node2 became a member")
	}
	if tok := st.Tokens[id]; !tok.Revoked() || tok.UsesSpent != 0 || tok.RevokedBy != "node1" {
		t.Fatalf("token %+v, want revoked by node1, no use spent", tok)
	}
	for _, info := range n1.agent.listTokens() {
		if info.ID == id && (info.State != TokenRevoked || !info.Revoked) {
			t.Fatalf("listed %+v, want revoked", info)
		}
	}
	if err := n1.agent.revokeToken(ctx, "zzzzzz"); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("revoke unknown id: %v, want %v", err, ErrUnknownToken)
	}
	if err := n1.agent.revokeToken(ctx, "NOT-AN-ID"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("revoke malformed id: %v, want %v", err, ErrBadRequest)
	}
	// The token of init (from before use counts: no limit) still admits.
	if err := c.tryJoin(newJoiner(t, "node2", "127.0.0.2", fsm.RoleGPU), "node1", c.token); err != nil {
		t.Fatalf("join with init's token: %v", err)
	}
}

func TestToken_CreateRefusesBadUseCounts(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	for _, uses := range []int{-1, fsm.MaxTokenUses + 1} {
		if _, err := n1.agent.createTokenUses(context.Background(), time.Hour, fsm.RoleGPU, uses); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("uses %d: %v, want %v", uses, err, ErrBadRequest)
		}
	}
	resp, err := n1.agent.createTokenUses(context.Background(), time.Hour, fsm.RoleWitness, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Split(resp.Token, ".")[1]
	if tok := n1.agent.FSM().State().Tokens[id]; tok.UsesAllowed != DefaultTokenUses || tok.Role != fsm.RoleWitness {
		t.Fatalf("token %+v, want %d use by default", tok, DefaultTokenUses)
	}
}

// fakeNow is a clock a test moves by hand.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func joinFrom(h http.Handler, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/v1/join", strings.NewReader("{}"))
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestJoin_RateLimitAnswers429ToABurstFromOneSourceOnly(t *testing.T) {
	clock := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var served atomic.Int64
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	h := newJoinLimiter(joinRate, joinBurst, clock.now).middleware(ok)

	for i := 0; i < joinBurst; i++ {
		if w := joinFrom(h, "192.0.2.1:40000"); w.Code != http.StatusOK {
			t.Fatalf("join %d of the burst: %d, want 200", i, w.Code)
		}
	}
	w := joinFrom(h, "192.0.2.1:40001")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("join past the burst: %d, want 429", w.Code)
	}
	if ra := w.Header().Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	var eb ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Code != "rate_limited" {
		t.Fatalf("body %s (%v), want code rate_limited", w.Body.Bytes(), err)
	}
	// Another source is not held back by the first one's burst.
	if w := joinFrom(h, "198.51.100.7:5555"); w.Code != http.StatusOK {
		t.Fatalf("join from another source: %d, want 200", w.Code)
	}
	// IPv4-mapped IPv6 is the same source.
	if w := joinFrom(h, "[::ffff:192.0.2.1]:40002"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("join from the mapped address: %d, want 429", w.Code)
	}
	// The bucket refills at joinRate a second.
	clock.add(time.Second / joinRate)
	if w := joinFrom(h, "192.0.2.1:40003"); w.Code != http.StatusOK {
		t.Fatalf("join after a refill: %d, want 200", w.Code)
	}
	if w := joinFrom(h, "192.0.2.1:40004"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("second join after one refill: %d, want 429", w.Code)
	}
	if got := served.Load(); got != joinBurst+2 {
		t.Fatalf("%d joins reached the handler, want %d", got, joinBurst+2)
	}
	// Other calls are not counted.
	r := httptest.NewRequest(http.MethodGet, "/v1/status", nil)
	r.RemoteAddr = "192.0.2.1:40005"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/status from a limited source: %d, want 200", rec.Code)
	}
}

func TestJoin_RateLimitForgetsRefilledSourcesWhenFull(t *testing.T) {
	clock := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newJoinLimiter(joinRate, joinBurst, clock.now)
	for i := 0; i < joinBucketsMax; i++ {
		if ok, _ := l.allow(netipFrom(i)); !ok {
			t.Fatalf("source %d refused", i)
		}
	}
	if ok, _ := l.allow(netipFrom(joinBucketsMax)); ok {
		t.Fatal("a new source was admitted with every bucket in use")
	}
	clock.add(time.Second) // every bucket refills its one token
	if ok, _ := l.allow(netipFrom(joinBucketsMax)); !ok {
		t.Fatal("a new source was refused after the others refilled")
	}
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets kept, want only the new one", n)
	}
}

// netipFrom returns the i-th address of 10.0.0.0/8.
func netipFrom(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestJoin_ListenerCapHoldsConnectionsBeyondTheCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2
	ln := capListener(raw, n)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for i := 0; i < n+1; i++ {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	var held []net.Conn
	for i := 0; i < n; i++ {
		select {
		case c := <-accepted:
			held = append(held, c)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d connections accepted, want %d", i, n)
		}
	}
	select {
	case <-accepted:
		t.Fatalf("connection %d accepted past the cap of %d", n+1, n)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not accepted after one closed")
	}
	for _, c := range held[1:] {
		c.Close()
	}
}

// Two joins racing for the one use of a token, one through the leader and
// one through a GPU follower (which commits through the leader): exactly
// one gets in, and the other is told token_invalid, whether it lost at the
// look-up or when the state machine applied its member record.
func TestJoin_TwoJoinsRacingForTheLastUseAdmitOne(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	waitFor(t, 10*time.Second, "node2 to apply the state", func() error {
		if _, ok := c.nodes["node2"].agent.FSM().Member("node2"); !ok {
			return errors.New("node2 has not applied its own record")
		}
		return nil
	})
	for round := 0; round < 3; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		resp, err := c.client("node1").CreateTokenUses(ctx, time.Hour, fsm.RoleGPU, 1)
		cancel()
		if err != nil {
			t.Fatalf("create token: %v", err)
		}
		id := strings.Split(resp.Token, ".")[1]
		waitFor(t, 10*time.Second, "node2 to apply the token", func() error {
			if _, ok := c.nodes["node2"].agent.FSM().State().Tokens[id]; !ok {
				return errors.New("not yet")
			}
			return nil
		})
		joiners := []*testNode{
			newJoiner(t, fmt.Sprintf("a%d", round), fmt.Sprintf("127.0.1.%d", round+1), fsm.RoleWitness),
			newJoiner(t, fmt.Sprintf("b%d", round), fmt.Sprintf("127.0.2.%d", round+1), fsm.RoleWitness),
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, via := range []string{"node1", "node2"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.tryJoin(joiners[i], via, resp.Token)
			}()
		}
		wg.Wait()
		admitted := 0
		for i, err := range errs {
			switch {
			case err == nil:
				admitted++
			case !errors.Is(err, ErrTokenInvalid):
				t.Fatalf("round %d, join %s: %v, want success or %v", round, joiners[i].name, err, ErrTokenInvalid)
			}
		}
		if admitted != 1 {
			t.Fatalf("round %d: %d joins admitted with a one-use token (%v)", round, admitted, errs)
		}
		if tok := n1.agent.FSM().State().Tokens[id]; tok.UsesSpent != 1 {
			t.Fatalf("round %d: token %+v, want 1 use spent", round, tok)
		}
	}
}

// Init's token admits the other GPU node and the witness, and no third
// node (issue 9, item 4: every token has a use count).
func TestInit_TokenAdmitsTwoNodesByDefault(t *testing.T) {
	c := newTestCluster(t)
	c.initOptions = func(o *InitOptions) { o.TokenUses = 0 }
	n1 := c.init("node1", "127.0.0.1")
	for _, tk := range n1.agent.FSM().State().Tokens {
		if tk.UsesAllowed != DefaultInitTokenUses {
			t.Fatalf("init's token allows %d uses, want %d", tk.UsesAllowed, DefaultInitTokenUses)
		}
	}
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	third := &testNode{name: "node3", role: fsm.RoleGPU, ip: "127.0.0.4", dataDir: t.TempDir(), ports: freePorts(t, "127.0.0.4")}
	c.nodes["node3"] = third
	if err := c.tryJoin(third, "node1", c.token); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("a third join with init's token: %v, want token_invalid", err)
	}
	delete(c.nodes, "node3")
}
