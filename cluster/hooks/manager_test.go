package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRunner answers each Run from its script: fail counts the attempts
// that fail before one succeeds; block, when set, holds every Run until
// it is closed or ctx ends.
type fakeRunner struct {
	mu      sync.Mutex
	fail    int
	calls   []string // event ids, in call order
	started chan string
	block   chan struct{}
}

func (f *fakeRunner) Run(ctx context.Context, argv, env []string, stdin []byte) ([]byte, error) {
	id := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "NEWBIEHA_EVENT_ID="); ok {
			id = v
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, id)
	n := len(f.calls)
	f.mu.Unlock()
	if f.started != nil {
		f.started <- id
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if n <= f.fail {
		return []byte("boom"), errors.New("exit status 1")
	}
	return nil, nil
}

func (f *fakeRunner) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// fakeClock fires every After at once and records the pauses asked for.
type fakeClock struct {
	mu     sync.Mutex
	pauses []time.Duration
}

func (c *fakeClock) Now() time.Time { return time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.pauses = append(c.pauses, d)
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

func execHook(name string, retries int, events ...string) Hook {
	return Hook{Name: name, Events: events, Exec: &Exec{Command: []string{"/bin/true"}}, Timeout: time.Minute,
		Retries: retries, Backoff: time.Second, MaxBackoff: 4 * time.Second}
}

func statsOf(t *testing.T, m *Manager, name string) Stats {
	t.Helper()
	for _, s := range m.Stats() {
		if s.Hook == name {
			return s
		}
	}
	t.Fatalf("no stats for hook %q in %+v", name, m.Stats())
	return Stats{}
}

// waitUntil polls cond for up to a generous bound (it checks behaviour,
// not speed).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEmit_FullQueueDropsAndCountsWithoutBlocking(t *testing.T) {
	r := &fakeRunner{started: make(chan string, 100), block: make(chan struct{})}
	m := New(Config{Node: "node1", QueueLen: 2, Runner: r, Clock: &fakeClock{}})
	defer m.Close()
	if err := m.Set([]Hook{execHook("slow", 0)}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: BecameHolder})
	<-r.started // the worker holds the first event in its attempt
	done := make(chan struct{})
	go func() {
		for range 9 {
			m.Emit(Event{Event: BecameHolder})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Emit blocked on a hook whose attempt hangs")
	}
	s := statsOf(t, m, "slow")
	if s.Dropped != 7 || s.Queued != 2 {
		t.Fatalf("dropped %d queued %d, want 7 and 2 (queue of 2, one in flight)", s.Dropped, s.Queued)
	}
	close(r.block)
	waitUntil(t, "the queued events", func() bool { return statsOf(t, m, "slow").Delivered == 3 })
}

func TestDeliver_RetriesWithDoublingBackoffThenSucceeds(t *testing.T) {
	r := &fakeRunner{fail: 4}
	c := &fakeClock{}
	m := New(Config{Node: "node1", Runner: r, Clock: c})
	defer m.Close()
	if err := m.Set([]Hook{execHook("h", 5)}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: Released, Epoch: 7})
	waitUntil(t, "delivery", func() bool { return statsOf(t, m, "h").Delivered == 1 })
	s := statsOf(t, m, "h")
	if s.Attempts["error"] != 4 || s.Attempts["ok"] != 1 || s.Failed != 0 {
		t.Fatalf("stats %+v", s)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	if !slices.Equal(c.pauses, want) {
		t.Fatalf("pauses %v, want %v (doubling, capped at max_backoff)", c.pauses, want)
	}
	ids := r.ids()
	for _, id := range ids {
		if id != ids[0] || id == "" {
			t.Fatalf("attempts carried ids %v: want one id, the same in every attempt", ids)
		}
	}
}

func TestDeliver_GivesUpAfterRetriesAndGoesOn(t *testing.T) {
	r := &fakeRunner{fail: 3}
	m := New(Config{Node: "node1", Runner: r, Clock: &fakeClock{}})
	defer m.Close()
	if err := m.Set([]Hook{execHook("h", 2)}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: Released, ID: "first"})
	m.Emit(Event{Event: Released, ID: "second"})
	waitUntil(t, "both events", func() bool { s := statsOf(t, m, "h"); return s.Failed == 1 && s.Delivered == 1 })
	if ids := r.ids(); !slices.Equal(ids, []string{"first", "first", "first", "second"}) {
		t.Fatalf("attempts %v: want 3 of the first (1 + 2 retries), then the second", ids)
	}
}

func TestEmit_OnlyWantedKindsInOrder(t *testing.T) {
	r := &fakeRunner{}
	m := New(Config{Node: "node1", Runner: r, Clock: &fakeClock{}})
	defer m.Close()
	if err := m.Set([]Hook{execHook("h", 0, Released, BecameHolder)}); err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{Released, HealthChanged, BecameHolder, FailoverCommitted, Released} {
		m.Emit(Event{Event: k, ID: fmt.Sprint(i)})
	}
	waitUntil(t, "three deliveries", func() bool { return statsOf(t, m, "h").Delivered == 3 })
	if ids := r.ids(); !slices.Equal(ids, []string{"0", "2", "4"}) {
		t.Fatalf("delivered %v, want the wanted kinds in emit order", ids)
	}
}

func TestEmit_FillsIDNodeTime(t *testing.T) {
	r := &fakeRunner{}
	m := New(Config{Node: "node1", Runner: r, Clock: &fakeClock{}})
	defer m.Close()
	if err := m.Set([]Hook{execHook("h", 0)}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: Released})
	m.Emit(Event{Event: Released})
	waitUntil(t, "two deliveries", func() bool { return statsOf(t, m, "h").Delivered == 2 })
	ids := r.ids()
	if ids[0] == ids[1] || !strings.HasPrefix(ids[0], "node1-") {
		t.Fatalf("generated ids %v: want distinct, prefixed with the node", ids)
	}
}

func TestSet_KeepsUnchangedHookAndStopsChangedOne(t *testing.T) {
	r := &fakeRunner{started: make(chan string, 10), block: make(chan struct{})}
	m := New(Config{Node: "node1", Runner: r, Clock: &fakeClock{}})
	defer m.Close()
	a, b := execHook("a", 0), execHook("b", 0)
	if err := m.Set([]Hook{a, b}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: Released, ID: "x"})
	<-r.started
	<-r.started // both attempts in flight
	b2 := b
	b2.Timeout = 2 * time.Minute
	if err := m.Set([]Hook{a, b2}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b's attempt to be discarded", func() bool { return statsOf(t, m, "b").Discarded == 1 })
	close(r.block)
	waitUntil(t, "a's delivery", func() bool { return statsOf(t, m, "a").Delivered == 1 })
	if s := statsOf(t, m, "a"); s.Discarded != 0 {
		t.Fatalf("unchanged hook lost its attempt: %+v", s)
	}
	if err := m.Set([]Hook{a, a}); err == nil || !strings.Contains(err.Error(), `"a" is used twice`) {
		t.Fatalf("duplicate names: %v", err)
	}
}

// fakeDoer answers with the given statuses in turn.
type fakeDoer struct {
	mu       sync.Mutex
	statuses []int
	n        int
}

func (d *fakeDoer) Do(r *http.Request) (*http.Response, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.statuses[min(d.n, len(d.statuses)-1)]
	d.n++
	return &http.Response{StatusCode: s, Status: fmt.Sprint(s), Body: http.NoBody}, nil
}

func TestWebhook_ClientErrorIsNotRetried(t *testing.T) {
	d := &fakeDoer{statuses: []int{503, 401, 200}}
	m := New(Config{Node: "node1", Doer: d, Clock: &fakeClock{}})
	defer m.Close()
	h := Hook{Name: "w", Webhook: &Webhook{URL: "http://127.0.0.1:1/x"}, Timeout: time.Second, Retries: 5, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}
	if err := m.Set([]Hook{h}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: BecameHolder})
	waitUntil(t, "the hook to give up", func() bool { return statsOf(t, m, "w").Failed == 1 })
	if d.n != 2 {
		t.Fatalf("%d requests: want 2 (503 retried, 401 final)", d.n)
	}
}

func TestValidate_NamesTheKey(t *testing.T) {
	ok := execHook("h", 0)
	for _, c := range []struct {
		name string
		edit func(*Hook)
		want string
	}{
		{"neither", func(h *Hook) { h.Exec = nil }, "exec: set exactly one of exec and webhook"},
		{"both", func(h *Hook) { h.Webhook = &Webhook{URL: "http://x"} }, "not both"},
		{"relative", func(h *Hook) { h.Exec.Command = []string{"notify.sh"} }, `exec.command[0]: "notify.sh" is not an absolute path`},
		{"empty argv", func(h *Hook) { h.Exec.Command = nil }, "exec.command: must name a program"},
		{"event", func(h *Hook) { h.Events = []string{Released, "became-master"} }, `events[1]: "became-master" is not an event`},
		{"twice", func(h *Hook) { h.Events = []string{Released, Released} }, `events[1]: "released" is listed twice`},
		{"timeout", func(h *Hook) { h.Timeout = 0 }, "exec.timeout: 0s must be above 0"},
		{"long", func(h *Hook) { h.Timeout = time.Hour }, "exec.timeout: 1h0m0s is over the limit"},
		{"retries", func(h *Hook) { h.Retries = 99 }, "exec.retries: 99 must be 0-20"},
		{"backoff", func(h *Hook) { h.MaxBackoff = time.Millisecond }, "exec.max_backoff: 1ms is below backoff 1s"},
		{"url", func(h *Hook) { h.Exec = nil; h.Webhook = &Webhook{URL: "ftp://x/y"} }, `webhook.url: "ftp://x/y" is not an http(s) URL`},
		{"userinfo", func(h *Hook) { h.Exec = nil; h.Webhook = &Webhook{URL: "https://u:p@x/y"} }, "webhook.url: must not carry a user or password"},
		{"secret", func(h *Hook) { h.Exec = nil; h.Webhook = &Webhook{URL: "https://x/y", SecretFile: "s.key"} }, `webhook.secret_file: "s.key" is not an absolute path`},
		{"webhook timeout key", func(h *Hook) { h.Exec = nil; h.Webhook = &Webhook{URL: "https://x/y"}; h.Timeout = -1 }, "webhook.timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := ok
			x := *ok.Exec
			h.Exec = &x
			c.edit(&h)
			err := h.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: %v, want %q", err, c.want)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a good hook: %v", err)
	}
}

func TestRedact_KeepsOnlySchemeAndHost(t *testing.T) {
	if got := redact("https://hooks.example.com/services/T0/B0/SECRET?token=x"); got != "https://hooks.example.com" {
		t.Fatal(got)
	}
}

func TestShutdown_LetsQueuedEventsFinishThenStops(t *testing.T) {
	r := &fakeRunner{}
	m := New(Config{Node: "node1", Runner: r, Clock: &fakeClock{}})
	if err := m.Set([]Hook{execHook("h", 0)}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		m.Emit(Event{Event: Released})
	}
	m.Shutdown(t.Context())
	if s := statsOf(t, m, "h"); s.Delivered != 5 || s.Discarded != 0 {
		t.Fatalf("stats %+v: Shutdown with time left must deliver what was queued", s)
	}
	m.Emit(Event{Event: Released}) // after Shutdown: ignored, no panic
	if s := statsOf(t, m, "h"); s.Delivered != 5 {
		t.Fatalf("stats %+v", s)
	}
}
