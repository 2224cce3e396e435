package gossip

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// telemetry returns a state blob shaped like the agent's: four check
// results and GPU telemetry (the fields health/gpu reports, with random
// UUIDs) as JSON, growing by GPUs until it is at least n bytes. round
// changes the readings.
func telemetry(node string, round, n int) []byte {
	type check struct {
		Name, Kind, Status, Output string
		Required, OK               bool
		Since, LastRun             time.Time
		ConsecutiveOK              int
	}
	type device struct {
		Index                                          int
		Name, UUID, DriverVersion                      string
		MemoryTotalBytes, MemoryUsedBytes, MemFree     uint64
		UtilizationGPU, UtilizationMemory, Temperature uint32
		PowerW                                         float64
		ECCCorrected, ECCUncorrected                   uint64
		RetiredPages, RemappedCorr, RemappedUncorr     int
		RemapPending, RemapFailed                      bool
	}
	now := time.Date(2026, 11, 28, 12, 0, round, 0, time.UTC)
	st := struct {
		Node    string
		Healthy bool
		Checks  []check
		GPU     []device
	}{Node: node, Healthy: true}
	for _, c := range []string{"http", "generate", "container", "gpu"} {
		st.Checks = append(st.Checks, check{Name: c, Kind: c, Status: "passing", Output: "HTTP 200 in 12ms", Required: c != "generate",
			OK: true, Since: now.Add(-time.Hour), LastRun: now, ConsecutiveOK: 100 + round})
	}
	rng := uint64(len(node)) * 0x9e3779b97f4a7c15
	for i := 0; ; i++ {
		rng = rng*6364136223846793005 + 1442695040888963407
		uuid := fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x", uint32(rng>>32), uint16(rng>>16), uint16(rng), uint16(rng>>48), rng&0xffffffffffff)
		st.GPU = append(st.GPU, device{Index: i, Name: "NVIDIA H200", UUID: uuid, DriverVersion: "570.124.06",
			MemoryTotalBytes: 150754820096, MemoryUsedBytes: uint64(1<<30*(i+round)) + rng%(1<<20), MemFree: 150754820096 - uint64(1<<30*(i+round)),
			UtilizationGPU: uint32(rng % 100), UtilizationMemory: uint32(rng >> 8 % 100), Temperature: 30 + uint32(rng>>16%40), PowerW: float64(rng%70000) / 100})
		b, err := json.Marshal(st)
		if err != nil {
			panic(err)
		}
		if len(b) >= n {
			return b
		}
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStates_SpreadToEveryNodeWithin3s is the acceptance line: telemetry
// from each node shows on every node within 3 s, for a small state (one
// UDP broadcast), realistic telemetry (compressed into a broadcast) and an
// incompressible state too large for a packet (direct TCP sends); each
// round replaces the previous one everywhere.
func TestStates_SpreadToEveryNodeWithin3s(t *testing.T) {
	nodes, _ := newCluster(t, 3, nil)
	rounds := []struct {
		name string
		blob func(node string, round int) []byte
	}{
		{"small", func(node string, r int) []byte { return fmt.Appendf(nil, `{"node":%q,"round":%d}`, node, r) }},
		{"telemetry 4KB", func(node string, r int) []byte { return telemetry(node, r, 4<<10) }},
		{"incompressible 8KB", func(string, int) []byte { return randomBytes(t, 8<<10) }},
		{"small again", func(node string, r int) []byte { return fmt.Appendf(nil, `{"node":%q,"round":%d}`, node, r) }},
	}
	lastVersion := map[string]uint64{}
	for r, round := range rounds {
		want := map[string][]byte{}
		for _, g := range nodes {
			want[g.cfg.Name] = round.blob(g.cfg.Name, r)
			if err := g.SetLocalState(want[g.cfg.Name]); err != nil {
				t.Fatalf("%s: SetLocalState: %v", round.name, err)
			}
		}
		start := time.Now()
		waitFor(t, 3*time.Second, func() error { return seesState(nodes, want) })
		t.Logf("%s: every node has every state after %v", round.name, time.Since(start))
		for _, g := range nodes {
			for _, m := range g.Members() {
				if m.Version <= lastVersion[g.cfg.Name+m.Name] {
					t.Errorf("%s: %s sees %s at version %d, not above %d", round.name, g.cfg.Name, m.Name, m.Version, lastVersion[g.cfg.Name+m.Name])
				}
				lastVersion[g.cfg.Name+m.Name] = m.Version
			}
		}
	}
}

// TestStates_LateJoinerGetsEveryState: a node that joins after the states
// were set gets all of them, and its own reaches the others, without any
// further SetLocalState.
func TestStates_LateJoinerGetsEveryState(t *testing.T) {
	nodes, _ := newCluster(t, 2, nil)
	want := map[string][]byte{}
	for _, g := range nodes {
		want[g.cfg.Name] = telemetry(g.cfg.Name, 1, 3<<10)
		if err := g.SetLocalState(want[g.cfg.Name]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Second, func() error { return seesState(nodes, want) })

	late, _ := newNode(t, "node3", "127.0.0.3", nil)
	want["node3"] = randomBytes(t, 6<<10) // too large to broadcast
	if err := late.SetLocalState(want["node3"]); err != nil {
		t.Fatal(err)
	}
	if _, err := late.Join([]string{nodes[1].LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	all := append(nodes, late)
	waitFor(t, 3*time.Second, func() error { return seesState(all, want) })
}

// TestWrongKey_KeptOut: a node with another key cannot join, the refusing
// node logs why at ERROR, and the node never shows up in anyone's members,
// even after push/pull rounds; an unencrypted memberlist is kept out too.
func TestWrongKey_KeptOut(t *testing.T) {
	fastPushPull := func(c *Config) { c.PushPullInterval = 200 * time.Millisecond }
	nodes, logs := newCluster(t, 2, fastPushPull)
	a := nodes[0]

	bad, badLog := newNode(t, "intruder", "127.0.0.9", func(c *Config) { c.Key = wrongKey; fastPushPull(c) })
	if err := bad.SetLocalState([]byte(`{"evil":true}`)); err != nil {
		t.Fatal(err)
	}
	n, err := bad.Join([]string{a.LocalAddr(), nodes[1].LocalAddr()})
	if err == nil || n != 0 {
		t.Fatalf("wrong-key Join = %d, %v; want 0 and an error", n, err)
	}
	if !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("wrong-key Join error %q does not match ErrKeyMismatch", err)
	}
	if !hasLine(badLog.String(), "level=ERROR", "do not share this gossip key") {
		t.Errorf("joiner log does not say why at ERROR:\n%s", badLog)
	}

	// An unencrypted memberlist on the same network.
	plainCfg := memberlist.DefaultLANConfig()
	plainCfg.Name, plainCfg.BindAddr, plainCfg.BindPort = "plain", "127.0.0.10", 0
	plainCfg.Logger = log.New(io.Discard, "", 0)
	plain, err := memberlist.Create(plainCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Shutdown() })
	if _, err := plain.Join([]string{a.LocalAddr()}); err == nil {
		t.Errorf("unencrypted memberlist joined")
	}

	// Let several gossip and push/pull rounds pass: a fresh state from
	// node2 reaching node1 twice over proves the cluster kept talking.
	for i := range 3 {
		want := map[string][]byte{"node2": fmt.Appendf(nil, "round %d", i)}
		if err := nodes[1].SetLocalState(want["node2"]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Second, func() error { return seesState(nodes, want) })
	}
	deadline := time.Now().Add(3 * a.cfg.PushPullInterval)
	for time.Now().Before(deadline) {
		for _, g := range nodes {
			for _, m := range g.Members() {
				if m.Name == "intruder" || m.Name == "plain" {
					t.Fatalf("%s lists %+v", g.cfg.Name, m)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := bad.Members(); len(got) != 1 || got[0].Name != "intruder" {
		t.Errorf("intruder sees %+v; want only itself", got)
	}
	if !hasLine(logs[0].String(), "level=ERROR", "could decrypt") {
		t.Errorf("node1's log does not show the refused join at ERROR")
	}
}

// hasLine reports whether one line of log holds every part.
func hasLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// encodeFor builds a signed wire message as origin would.
func encodeFor(t testing.TB, origin string, seq uint64, payload []byte) []byte {
	t.Helper()
	var e encoder
	raw, err := e.encodeState(stateMsg{Origin: origin, Seq: seq, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return signAs(t, theTestPKI.identity(origin), raw)
}

// TestOrdering_OlderNeverOverwritesNewer feeds one node a peer's states out
// of order through both entry points (messages and push/pull merge).
func TestOrdering_OlderNeverOverwritesNewer(t *testing.T) {
	g, _ := newNode(t, "node1", "127.0.0.1", nil)
	d := delegate{g}
	d.NotifyMsg(encodeFor(t, "peer", 10, []byte("v10")))
	d.NotifyMsg(encodeFor(t, "peer", 9, []byte("v9")))
	d.MergeRemoteState(encodeBundle([][]byte{encodeFor(t, "peer", 8, []byte("v8"))}), false)
	d.MergeRemoteState(encodeBundle([][]byte{encodeFor(t, "peer", 10, []byte("other v10"))}), true)
	if m, _ := member(g, "peer"); string(m.State) != "v10" || m.Version != 10 {
		t.Fatalf("after older updates: %q v%d; want v10", m.State, m.Version)
	}
	d.MergeRemoteState(encodeBundle([][]byte{encodeFor(t, "peer", 11, []byte("v11"))}), false)
	if m, _ := member(g, "peer"); string(m.State) != "v11" || m.Version != 11 {
		t.Fatalf("after newer merge: %q v%d; want v11", m.State, m.Version)
	}
	d.NotifyMsg(encodeFor(t, "peer", 12, []byte("v12")))
	if m, _ := member(g, "peer"); string(m.State) != "v12" {
		t.Fatalf("after newer message: %q; want v12", m.State)
	}
	// A state known only from others is listed, not alive, without address.
	if m, _ := member(g, "peer"); m.Alive || m.Addr != "" {
		t.Errorf("peer never seen by memberlist: %+v", m)
	}
}

// TestOrdering_RestartSupersedesOldState: when this node's state from a
// previous run with a higher sequence comes back, the node republishes its
// current state above it.
func TestOrdering_RestartSupersedesOldState(t *testing.T) {
	g, _ := newNode(t, "node1", "127.0.0.1", nil)
	if err := g.SetLocalState([]byte("now")); err != nil {
		t.Fatal(err)
	}
	self, _ := member(g, "node1")
	old := self.Version + 1000
	delegate{g}.MergeRemoteState(encodeBundle([][]byte{encodeFor(t, "node1", old, []byte("previous run"))}), true)
	self, _ = member(g, "node1")
	if string(self.State) != "now" || self.Version <= old {
		t.Fatalf("own state %q v%d; want %q above v%d", self.State, self.Version, "now", old)
	}
	// The bundle this node now sends carries the new version.
	parts, err := decodeBundle(delegate{g}.LocalState(false))
	if err != nil || len(parts) != 1 {
		t.Fatalf("LocalState: %d parts, %v", len(parts), err)
	}
	env, err := decodeEnvelope(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	if m, err := decodeState(env.inner); err != nil || m.Seq != self.Version || string(m.Payload) != "now" {
		t.Fatalf("LocalState carries %+v, %v", m, err)
	}
}

// TestDelegate_GarbageDropped feeds the delegate hostile input: nothing
// panics, nothing is stored, and each drop is logged.
func TestDelegate_GarbageDropped(t *testing.T) {
	g, l := newNode(t, "node1", "127.0.0.1", nil)
	d := delegate{g}
	valid := encodeFor(t, "peer", 1, telemetry("peer", 1, 2000))
	bomb := func() []byte { // compresses 64 KiB of zeros: inflates past the limit
		var e encoder
		raw, err := e.encodeState(stateMsg{Origin: "peer", Seq: 1, Payload: make([]byte, MaxStateSize)})
		if err != nil {
			t.Fatal(err)
		}
		// Re-deflate twice the limit by hand into the same frame.
		e.buf.Reset()
		e.fw.Reset(&e.buf)
		_, _ = e.fw.Write(make([]byte, 2*MaxStateSize))
		_ = e.fw.Close()
		hdr := raw[:len(raw)-len(raw[bytes.Index(raw, []byte("peer"))+4:])]
		return signAs(t, theTestPKI.identity("peer"), append(bytes.Clone(hdr), e.buf.Bytes()...))
	}()
	garbage := map[string][]byte{
		"nil":             nil,
		"empty":           {},
		"type only":       {msgState},
		"unknown type":    {0x7f, 0, 1, 1, 'x'},
		"unknown flag":    {msgState, 0x80, 1, 1, 'x'},
		"bad seq varint":  {msgState, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"name too long":   append([]byte{msgState, 0, 1, 0xad, 0x02}, bytes.Repeat([]byte{'a'}, 300)...),
		"name overruns":   {msgState, 0, 1, 50, 'a', 'b'},
		"empty name":      {msgState, 0, 1, 0, 'x'},
		"control in name": {msgState, 0, 1, 2, 'a', '\n'},
		"truncated":       valid[:len(valid)/2],
		"not deflate":     {msgState, flagDeflate, 1, 1, 'x', 0xff, 0xff, 0xff},
		"deflate bomb":    bomb,
		"oversized plain": append([]byte{msgState, 0, 1, 1, 'x'}, make([]byte, MaxStateSize+1)...),
		"huge":            make([]byte, 4*maxStateMsg),
		"random":          randomBytes(t, 1500),
	}
	for name, b := range garbage {
		t.Run(name, func(t *testing.T) {
			d.NotifyMsg(b)
			d.MergeRemoteState(b, false)
			d.MergeRemoteState(encodeBundle([][]byte{b}), true)
		})
	}
	bundles := map[string][]byte{
		"bundle count too high":   {msgBundle, 0xff, 0xff, 0x03},
		"bundle length overruns":  {msgBundle, 1, 100, 1, 2},
		"bundle trailing bytes":   append(encodeBundle([][]byte{valid}), 0),
		"bundle of state message": valid,
	}
	for name, b := range bundles {
		t.Run(name, func(t *testing.T) { d.MergeRemoteState(b, false) })
	}
	for _, m := range g.Members() {
		if m.Name != "node1" {
			t.Errorf("garbage produced member %+v", m)
		}
	}
	if n := strings.Count(l.String(), "dropping gossip"); n < len(garbage)*3-2 {
		t.Errorf("%d drop lines logged for %d bad inputs", n, len(garbage)*3)
	}
	// And a valid message after all that still works.
	d.NotifyMsg(valid)
	if m, ok := member(g, "peer"); !ok || m.Version != 1 {
		t.Errorf("valid message after garbage: %+v", m)
	}
}

// TestFailureDetection_KilledNodeSeenDead: a node stopped without Leave is
// seen not alive by the others; one that leaves is seen at once.
func TestFailureDetection_KilledNodeSeenDead(t *testing.T) {
	nodes, _ := newCluster(t, 4, nil)
	start := time.Now()
	if err := nodes[3].Close(); err != nil {
		t.Fatal(err)
	}
	notAlive := func(name string, observers []*Gossip) func() error {
		return func() error {
			for _, g := range observers {
				if m, ok := member(g, name); !ok || m.Alive {
					return fmt.Errorf("%s still sees %s alive", g.cfg.Name, name)
				}
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, notAlive("node4", nodes[:3]))
	t.Logf("killed node seen dead by all after %v", time.Since(start))

	start = time.Now()
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, notAlive("node3", nodes[:2]))
	t.Logf("leaving node seen gone by all after %v", time.Since(start))
	if m, _ := member(nodes[0], "node4"); m.Since.IsZero() || m.Addr == "" {
		t.Errorf("dead member lost its details: %+v", m)
	}
}

// TestOnChange_SlowCallbackBlocksNothing: while OnChange is stuck, gossip
// goes on (states arrive, members change), and the stuck call is followed
// by one coalesced call, not a backlog.
func TestOnChange_SlowCallbackBlocksNothing(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var calls atomic.Int32
	onChange := func() {
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-release
		}
	}
	a, _ := newNode(t, "node1", "127.0.0.1", func(c *Config) { c.OnChange = onChange })
	// Registered after newNode's Close, so it runs first: a failing test
	// must not leave Close waiting for the stuck callback forever.
	var once sync.Once
	unstick := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstick)
	select {
	case <-entered: // node1 joining itself is a change
	case <-time.After(3 * time.Second):
		t.Fatal("OnChange not called for the local node")
	}
	var peers []*Gossip
	for i := 2; i <= 3; i++ {
		p, _ := newNode(t, fmt.Sprintf("node%d", i), fmt.Sprintf("127.0.0.%d", i), nil)
		if _, err := p.Join([]string{a.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
	}
	for round := range 5 {
		want := map[string][]byte{}
		for _, p := range peers {
			want[p.cfg.Name] = telemetry(p.cfg.Name, round, 1000)
			if err := p.SetLocalState(want[p.cfg.Name]); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, func() error { return seesState([]*Gossip{a}, want) })
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("OnChange called %d times while the first call was stuck", n)
	}
	unstick()
	waitFor(t, 3*time.Second, func() error {
		if calls.Load() < 2 {
			return errors.New("no OnChange after the stuck one returned")
		}
		return nil
	})
	// A later change still triggers it.
	before := calls.Load()
	if err := peers[0].SetLocalState([]byte("final")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, func() error {
		if calls.Load() <= before {
			return errors.New("no OnChange for a new state")
		}
		return nil
	})
}

// TestClose_StopsEverything: after Close no goroutine of ours or
// memberlist's is left, calls return ErrClosed, and Close is idempotent.
func TestClose_StopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	var during int
	func() {
		a, _ := newNode(t, "node1", "127.0.0.1", func(c *Config) { c.OnChange = func() {} })
		b, _ := newNode(t, "node2", "127.0.0.2", nil)
		if _, err := b.Join([]string{a.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
		for _, g := range []*Gossip{a, b} {
			if err := g.SetLocalState(randomBytes(t, 4000)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 3*time.Second, func() error {
			if m, _ := member(b, "node1"); m.State == nil {
				return errors.New("node2 has no state of node1")
			}
			return nil
		})
		during = runtime.NumGoroutine()
		for _, g := range []*Gossip{a, b} {
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if err := g.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := g.SetLocalState([]byte("x")); !errors.Is(err, ErrClosed) {
				t.Errorf("SetLocalState after Close: %v", err)
			}
			if _, err := g.Join([]string{"127.0.0.1:1"}); !errors.Is(err, ErrClosed) {
				t.Errorf("Join after Close: %v", err)
			}
			if err := g.Leave(time.Second); !errors.Is(err, ErrClosed) {
				t.Errorf("Leave after Close: %v", err)
			}
		}
		// Close waited for this package's own goroutines: none is left,
		// with no polling.
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, fn := range []string{"(*Gossip).notifyLoop", "(*Gossip).sendLoop"} {
			if strings.Contains(stacks, fn) {
				t.Errorf("%s still running after Close", fn)
			}
		}
	}()
	if during-before < 10 {
		t.Fatalf("only %d goroutines more while running; the check below would prove nothing", during-before)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d running, %d after Close", before, during, runtime.NumGoroutine())
}

func TestSetLocalState_TooLarge(t *testing.T) {
	g, _ := newNode(t, "node1", "127.0.0.1", nil)
	if err := g.SetLocalState(make([]byte, MaxStateSize)); err != nil {
		t.Fatalf("state of exactly MaxStateSize: %v", err)
	}
	err := g.SetLocalState(make([]byte, MaxStateSize+1))
	if !errors.Is(err, ErrStateTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(MaxStateSize+1)) {
		t.Fatalf("oversized state: %v", err)
	}
	if m, _ := member(g, "node1"); len(m.State) != MaxStateSize {
		t.Errorf("oversized state replaced the old one: %d bytes", len(m.State))
	}
}

func TestSetLocalState_SameBlobNotRepublished(t *testing.T) {
	g, _ := newNode(t, "node1", "127.0.0.1", nil)
	for range 2 {
		if err := g.SetLocalState([]byte("same")); err != nil {
			t.Fatal(err)
		}
	}
	v1, _ := member(g, "node1")
	if err := g.SetLocalState([]byte("same")); err != nil {
		t.Fatal(err)
	}
	v2, _ := member(g, "node1")
	if v1.Version != v2.Version {
		t.Errorf("identical state bumped the version %d → %d", v1.Version, v2.Version)
	}
	if err := g.SetLocalState([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if v3, _ := member(g, "node1"); v3.Version != v2.Version+1 {
		t.Errorf("new state version %d, want %d", v3.Version, v2.Version+1)
	}
}

func TestConfig_Validate(t *testing.T) {
	good := Config{Name: "node1", BindAddr: "127.0.0.1", Key: testKey}
	withIdentity(&good)
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"control char name", func(c *Config) { c.Name = "a\tb" }, "Name"},
		{"no key", func(c *Config) { c.Key = nil }, "Key: 0 bytes, want 32"},
		{"short key", func(c *Config) { c.Key = testKey[:16] }, "Key: 16 bytes"},
		{"bad bind", func(c *Config) { c.BindAddr = "eth0" }, `BindAddr "eth0"`},
		{"bad advertise", func(c *Config) { c.AdvertiseAddr = "0.0.0.0" }, "AdvertiseAddr"},
		{"port", func(c *Config) { c.BindPort = 70000 }, "BindPort 70000"},
		{"advertise port", func(c *Config) { c.AdvertisePort = -1 }, "AdvertisePort -1"},
		{"probe timeout", func(c *Config) { c.ProbeTimeout = time.Second }, "ProbeTimeout 1s must be below ProbeInterval"},
		{"negative interval", func(c *Config) { c.GossipInterval = -time.Second }, "GossipInterval"},
		{"suspicion", func(c *Config) { c.SuspicionMult = -1 }, "SuspicionMult -1"},
		{"no signing key", func(c *Config) { c.SigningKey = nil }, "SigningKey: required"},
		{"no certificate", func(c *Config) { c.Certificate = nil }, "Certificate: required"},
		{"no verifier", func(c *Config) { c.VerifyOrigin = nil }, "VerifyOrigin: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v; want it to mention %q", err, tc.want)
			}
			if _, err := New(c); err == nil {
				t.Fatal("New accepted the config")
			}
		})
	}
}

// TestReconnect_RestartedNodeFoundAgain: a node that died and comes back
// at the same address without joining anyone is joined by the others'
// reconnect loop, and states flow both ways again. memberlist stops
// gossiping to the dead at once here, so nothing but the reconnect loop
// can find the node (with ReconnectInterval at an hour this test fails).
func TestReconnect_RestartedNodeFoundAgain(t *testing.T) {
	fast := func(c *Config) {
		c.ReconnectInterval = 200 * time.Millisecond
		c.tweak = func(mc *memberlist.Config) { mc.GossipToTheDeadTime = time.Millisecond }
	}
	nodes, _ := newCluster(t, 3, fast)
	addr := nodes[2].LocalAddr()
	host, portStr, _ := strings.Cut(addr, ":")
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		for _, g := range nodes[:2] {
			if m, _ := member(g, "node3"); m.Alive {
				return fmt.Errorf("%s still sees node3 alive", g.cfg.Name)
			}
		}
		return nil
	})
	var port int
	fmt.Sscan(portStr, &port)
	again, _ := newNode(t, "node3", host, func(c *Config) { fast(c); c.BindPort = port })
	want := map[string][]byte{"node3": []byte("back"), "node1": []byte("still here")}
	for _, g := range []*Gossip{again, nodes[0]} {
		if err := g.SetLocalState(want[g.cfg.Name]); err != nil {
			t.Fatal(err)
		}
	}
	all := []*Gossip{nodes[0], nodes[1], again}
	waitFor(t, 5*time.Second, func() error {
		for _, g := range all {
			if a := aliveNames(g); len(a) != 3 {
				return fmt.Errorf("%s sees alive %v", g.cfg.Name, a)
			}
		}
		return seesState(all, want)
	})
}

// TestForget drops a dead node and ignores its relayed state.
func TestForget(t *testing.T) {
	nodes, _ := newCluster(t, 3, nil)
	if err := nodes[2].SetLocalState([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, func() error { return seesState(nodes[:1], map[string][]byte{"node3": []byte("x")}) })
	if err := nodes[0].Forget("node3"); err == nil {
		t.Error("Forget of a live node succeeded")
	}
	if err := nodes[0].Forget("node1"); err == nil {
		t.Error("Forget of this node succeeded")
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if m, _ := member(nodes[0], "node3"); m.Alive {
			return errors.New("node3 still alive")
		}
		return nil
	})
	if err := nodes[0].Forget("node3"); err != nil {
		t.Fatal(err)
	}
	delegate{nodes[0]}.NotifyMsg(encodeFor(t, "node3", 1<<62, []byte("relayed")))
	if m, ok := member(nodes[0], "node3"); ok {
		t.Errorf("forgotten node listed: %+v", m)
	}
}
