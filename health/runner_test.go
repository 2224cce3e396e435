package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/newbieha/newbieha/health/gpu"
)

// fakeClock is a Clock moved by hand. After registers a waiter that Advance
// fires; afterCalls counts After calls, one per sample a check loop takes.
type fakeClock struct {
	mu         sync.Mutex
	now        time.Time
	waiters    []fakeWaiter
	afterCalls int
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.afterCalls++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{at: f.now.Add(d), ch: ch})
	return ch
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- f.now
	}
	f.waiters = kept
}

func (f *fakeClock) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.afterCalls
}

// script is a Prober that returns scripted outcomes, then repeats the last.
type script struct {
	mu       sync.Mutex
	outcomes []bool
	calls    int
}

func (s *script) Probe(ctx context.Context) Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(s.calls, len(s.outcomes)-1)
	s.calls++
	if s.outcomes[i] {
		return Sample{OK: true, Output: "fine"}
	}
	return Sample{Output: "broken"}
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// scriptedCheck is an exec check whose prober the test replaces.
func scriptedCheck(name string, required bool) CheckConfig {
	return CheckConfig{Name: name, Kind: KindExec, Interval: time.Second, Timeout: 500 * time.Millisecond,
		Rise: 2, Fall: 2, Required: required, Exec: &ExecConfig{Command: []string{"false"}}}
}

// harness runs a Runner on a fake clock.
type harness struct {
	t     *testing.T
	clock *fakeClock
	r     *Runner
}

func startHarness(t *testing.T, checks []CheckConfig, probers map[string]Prober, deps Deps) *harness {
	t.Helper()
	clock, ok := deps.Clock.(*fakeClock)
	if !ok {
		clock = newFakeClock(t0)
		deps.Clock = clock
	}
	r, err := newRunner(Config{Checks: checks}, deps, probers)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	h := &harness{t: t, clock: clock, r: r}
	h.waitSamples(len(checks))
	return h
}

// waitSamples waits until the check loops have taken n samples in all and
// are waiting for their next interval.
func (h *harness) waitSamples(n int) {
	h.t.Helper()
	waitFor(h.t, "samples", 5*time.Second, func() bool { return h.clock.calls() >= n })
}

// tick advances the clock by one interval and waits for the sample it
// triggers in each of the n checks.
func (h *harness) tick(n int) {
	h.t.Helper()
	before := h.clock.calls()
	h.clock.Advance(time.Second)
	h.waitSamples(before + n)
}

func (h *harness) result(i int) Result { return h.r.Report().Checks[i] }

func TestRunner_RiseFallOnAFakeClock(t *testing.T) {
	svc := &script{outcomes: []bool{true, true, false, false, true, true}}
	h := startHarness(t, []CheckConfig{scriptedCheck("svc", true)}, map[string]Prober{"svc": svc}, Deps{})

	want := []struct {
		status Status
		ok     bool
	}{
		{StatusUnknown, true}, {StatusPassing, true}, {StatusPassing, false},
		{StatusFailing, false}, {StatusFailing, true}, {StatusPassing, true},
	}
	for i, w := range want {
		if i > 0 {
			h.tick(1)
		}
		res := h.result(0)
		sampleTime := t0.Add(time.Duration(i) * time.Second)
		if res.Status != w.status || res.OK != w.ok || !res.LastRun.Equal(sampleTime) {
			t.Fatalf("sample %d: %+v, want %s ok=%v at %v", i, res, w.status, w.ok, sampleTime)
		}
	}
	if svc.count() != 6 {
		t.Fatalf("prober ran %d times", svc.count())
	}
	// Changes saw the three transitions, each with its time.
	wantChanges := []struct {
		status Status
		since  time.Time
	}{
		{StatusPassing, t0.Add(time.Second)}, {StatusFailing, t0.Add(3 * time.Second)}, {StatusPassing, t0.Add(5 * time.Second)},
	}
	for i, w := range wantChanges {
		select {
		case c := <-h.r.Changes():
			if c.Status != w.status || !c.Since.Equal(w.since) || c.ID() != "exec:svc" {
				t.Fatalf("change %d: %+v, want %s since %v", i, c, w.status, w.since)
			}
		default:
			t.Fatalf("change %d missing", i)
		}
	}
	select {
	case c := <-h.r.Changes():
		t.Fatalf("unexpected change %+v", c)
	default:
	}
}

func TestRunner_VerdictAndReason(t *testing.T) {
	web := &script{outcomes: []bool{true}}
	disk := &script{outcomes: []bool{false}}
	gpuCheck := &script{outcomes: []bool{true, true, false}}
	h := startHarness(t,
		[]CheckConfig{scriptedCheck("web", true), scriptedCheck("disk", false), scriptedCheck("gpu", true)},
		map[string]Prober{"web": web, "disk": disk, "gpu": gpuCheck}, Deps{})

	rep := h.r.Report()
	if rep.Healthy || rep.Reason != "exec:web" || rep.ReasonStatus != StatusUnknown {
		t.Fatalf("before any verdict: %+v", rep.Verdict)
	}
	h.tick(3)
	rep = h.r.Report()
	if !rep.Healthy || rep.Reason != "" {
		t.Fatalf("after rise: %+v (checks %+v)", rep.Verdict, rep.Checks)
	}
	if rep.Checks[1].Status != StatusFailing {
		t.Fatalf("informational check: %+v", rep.Checks[1])
	}
	h.tick(3)
	h.tick(3)
	rep = h.r.Report()
	if rep.Healthy || rep.Reason != "exec:gpu" || rep.ReasonStatus != StatusFailing {
		t.Fatalf("after fall: %+v", rep.Verdict)
	}
	if !rep.At.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("report time %v", rep.At)
	}
}

func TestRunner_Inject(t *testing.T) {
	svc := &script{outcomes: []bool{true}}
	h := startHarness(t, []CheckConfig{scriptedCheck("svc", true)}, map[string]Prober{"svc": svc}, Deps{})
	h.tick(1)
	if res := h.result(0); res.Status != StatusPassing {
		t.Fatalf("not passing: %+v", res)
	}

	until := t0.Add(10 * time.Second)
	for _, c := range []struct {
		name   string
		status Status
		until  time.Time
		want   string
	}{
		{"nope", StatusFailing, until, "no such check"},
		{"svc", StatusUnknown, until, `status "unknown" must be "passing" or "failing"`},
		{"svc", StatusFailing, t0.Add(time.Second), "is not after now"},
	} {
		if err := h.r.Inject(c.name, c.status, c.until); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("Inject(%s, %s): %v, want %q", c.name, c.status, err, c.want)
		}
	}
	if err := h.r.Inject("nope", StatusFailing, until); !errors.Is(err, ErrUnknownCheck) {
		t.Fatalf("Inject unknown: %v", err)
	}

	// The injection takes a sample at once (no clock advance), without the
	// prober, and goes through fall like a real failure.
	calls := svc.count()
	if err := h.r.Inject("exec:svc", StatusFailing, until); err != nil {
		t.Fatal(err)
	}
	h.waitSamples(3)
	res := h.result(0)
	if res.Status != StatusPassing || res.ConsecutiveFail != 1 || !res.Injected || !res.InjectedUntil.Equal(until) ||
		res.Output != "injected failing until 2026-01-02T03:04:15Z" {
		t.Fatalf("first injected sample: %+v", res)
	}
	h.tick(1)
	if res := h.result(0); res.Status != StatusFailing || !res.Injected {
		t.Fatalf("second injected sample: %+v", res)
	}
	if svc.count() != calls {
		t.Fatal("the prober ran during the injection")
	}
	if rep := h.r.Report(); rep.Healthy || rep.Reason != "exec:svc" || !rep.Checks[0].Injected {
		t.Fatalf("report during injection: %+v", rep.Verdict)
	}

	// Once the time is up the real prober runs again, and rise applies.
	h.clock.Advance(8 * time.Second) // now t0+10s: the injection ends
	h.waitSamples(5)
	res = h.result(0)
	if res.Injected || res.Status != StatusFailing || res.ConsecutiveOK != 1 || res.Output != "fine" {
		t.Fatalf("after the injection: %+v", res)
	}
	h.tick(1)
	if res := h.result(0); res.Status != StatusPassing {
		t.Fatalf("not passing again: %+v", res)
	}

	// ClearInjection ends one early.
	if err := h.r.Inject("svc", StatusFailing, h.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.waitSamples(7)
	if err := h.r.ClearInjection("svc"); err != nil {
		t.Fatal(err)
	}
	h.waitSamples(8)
	if res := h.result(0); res.Injected || res.ConsecutiveOK != 1 {
		t.Fatalf("after ClearInjection: %+v", res)
	}
	if err := h.r.ClearInjection("nope"); !errors.Is(err, ErrUnknownCheck) {
		t.Fatalf("ClearInjection unknown: %v", err)
	}
}

func TestRunner_ChangesDropWhenFull(t *testing.T) {
	cc := scriptedCheck("svc", true)
	cc.Rise, cc.Fall = 1, 1
	svc := &script{outcomes: []bool{true, false, true, false}}
	h := startHarness(t, []CheckConfig{cc}, map[string]Prober{"svc": svc}, Deps{ChangeBuffer: 2})
	h.tick(1)
	h.tick(1)
	h.tick(1)
	if rep := h.r.Report(); rep.DroppedChanges != 2 || rep.Checks[0].Status != StatusFailing {
		t.Fatalf("dropped %d, status %s", rep.DroppedChanges, rep.Checks[0].Status)
	}
	if c := <-h.r.Changes(); c.Status != StatusPassing {
		t.Fatalf("first change %+v", c)
	}
}

func TestRunner_GPUTelemetryInReport(t *testing.T) {
	fake := &fakeGPU{devs: []gpu.Device{h200(0)}}
	cc := CheckConfig{Name: "gpu", Kind: KindGPU, Required: true, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 1}
	h := startHarness(t, []CheckConfig{cc}, nil, Deps{GPU: fake})
	rep := h.r.Report()
	if !rep.Healthy || len(rep.GPU) != 1 || rep.GPU[0].Name != "NVIDIA H200" || rep.GPUError != "" {
		t.Fatalf("report: %+v", rep)
	}
	// The check goroutine is waiting on the clock: Advance (in tick) orders
	// these writes before its next read.
	fake.devs = nil
	fake.err = errors.New("NVML unavailable: init: ERROR_LIBRARY_NOT_FOUND")
	h.tick(1)
	rep = h.r.Report()
	if rep.Healthy || rep.Reason != "gpu:gpu" || rep.GPU != nil || !strings.Contains(rep.GPUError, "ERROR_LIBRARY_NOT_FOUND") ||
		rep.Checks[0].Output != "NVML unavailable: init: ERROR_LIBRARY_NOT_FOUND" {
		t.Fatalf("report after NVML failure: %+v", rep)
	}
}

// blocker is a Prober that blocks until its context ends.
type blocker struct{ running atomic.Int32 }

func (b *blocker) Probe(ctx context.Context) Sample {
	b.running.Add(1)
	defer b.running.Add(-1)
	<-ctx.Done()
	return Sample{Output: ctx.Err().Error()}
}

func TestRunner_CloseStopsEveryGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	b := &blocker{}
	checks := []CheckConfig{scriptedCheck("a", true), scriptedCheck("b", true), scriptedCheck("c", false)}
	checks[2].Timeout = time.Minute
	checks[2].Interval = 2 * time.Minute
	r, err := newRunner(Config{Checks: checks}, Deps{Clock: newFakeClock(t0)},
		map[string]Prober{"a": &script{outcomes: []bool{true}}, "b": &script{outcomes: []bool{false}}, "c": b})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	waitFor(t, "the blocking probe to start", 5*time.Second, func() bool { return b.running.Load() == 1 })

	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if b.running.Load() != 0 {
		t.Fatal("a probe is still running after Close")
	}
	if _, ok := <-r.Changes(); ok {
		// Drain: Changes may hold transitions, but must end closed.
		for range r.Changes() {
		}
	}
	if r.Report().Checks[2].LastRun != (time.Time{}) {
		t.Fatal("a sample cut short by Close was recorded")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := r.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	waitFor(t, "goroutines to exit", 5*time.Second, func() bool { return runtime.NumGoroutine() <= before })
}

func TestRunner_StopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := &blocker{}
	r, err := newRunner(Config{Checks: []CheckConfig{scriptedCheck("a", true)}}, Deps{}, map[string]Prober{"a": b})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the probe to start", 5*time.Second, func() bool { return b.running.Load() == 1 })
	cancel()
	waitFor(t, "the probe to stop", 5*time.Second, func() bool { return b.running.Load() == 0 })
	r.Close()
}

// TestRunner_RealHTTPOnTheSystemClock runs the whole path for real: an HTTP
// server that starts failing, short intervals, the system clock.
func TestRunner_RealHTTPOnTheSystemClock(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(ts.Close)
	cc := CheckConfig{Name: "health", Kind: KindHTTP, Required: true, Interval: 100 * time.Millisecond, Timeout: 90 * time.Millisecond,
		Rise: 2, Fall: 2, HTTP: &HTTPConfig{URL: ts.URL + "/health"}}
	r, err := New(Config{Checks: []CheckConfig{cc}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	waitFor(t, "healthy", 5*time.Second, func() bool { return r.Report().Healthy })
	status.Store(http.StatusInternalServerError)
	waitFor(t, "unhealthy", 5*time.Second, func() bool { return r.Report().Reason == "http:health" })
	rep := r.Report()
	if rep.ReasonStatus != StatusFailing || !strings.Contains(rep.Checks[0].Output, "HTTP 500 Internal Server Error") {
		t.Fatalf("report: %+v", rep)
	}
	status.Store(http.StatusOK)
	waitFor(t, "healthy again", 5*time.Second, func() bool { return r.Report().Healthy })
	var seen []Status
	for len(seen) < 3 {
		select {
		case c := <-r.Changes():
			seen = append(seen, c.Status)
		case <-time.After(5 * time.Second):
			t.Fatalf("changes: %v", seen)
		}
	}
	if seen[0] != StatusPassing || seen[1] != StatusFailing || seen[2] != StatusPassing {
		t.Fatalf("changes: %v", seen)
	}
}
