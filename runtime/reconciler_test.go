package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDriver is a Driver whose methods are function fields.
type fakeDriver struct {
	EnsureFunc  func(ctx context.Context, spec Spec, want Want) (State, error)
	InspectFunc func(ctx context.Context) (State, error)
}

func (f *fakeDriver) Ensure(ctx context.Context, spec Spec, want Want) (State, error) {
	return f.EnsureFunc(ctx, spec, want)
}

func (f *fakeDriver) Inspect(ctx context.Context) (State, error) {
	if f.InspectFunc == nil {
		return State{}, errors.New("not implemented")
	}
	return f.InspectFunc(ctx)
}
func (f *fakeDriver) Remove(context.Context) error { return nil }
func (f *fakeDriver) Close() error                 { return nil }

// call is one recorded Ensure.
type call struct {
	spec Spec
	want Want
}

// recorder is a fake Ensure that records calls and can be told to fail.
type recorder struct {
	mu    sync.Mutex
	calls []call
	fail  error
}

func (r *recorder) ensure(_ context.Context, spec Spec, want Want) (State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{spec, want})
	if r.fail != nil {
		return State{}, r.fail
	}
	st := State{Exists: true, Status: "exited", Name: spec.Name}
	if want == Running {
		st.Running, st.Status = true, "running"
	}
	return st, nil
}

func (r *recorder) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func (r *recorder) last() (call, int) {
	c := r.snapshot()
	if len(c) == 0 {
		return call{}, 0
	}
	return c[len(c)-1], len(c)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startReconciler runs r until the test ends and checks Run returns.
func startReconciler(t *testing.T, r *Reconciler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// logWriter routes logs to t.Log so they show only on failure.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func TestWantFor(t *testing.T) {
	cases := []struct {
		mode   Mode
		active bool
		want   Want
	}{
		{Hot, true, Running}, {Hot, false, Running}, {Cold, true, Running}, {Cold, false, Stopped},
	}
	for _, c := range cases {
		if got := WantFor(c.mode, c.active); got != c.want {
			t.Errorf("WantFor(%s, %v) = %s, want %s", c.mode, c.active, got, c.want)
		}
	}
	if m, err := ParseMode(""); err != nil || m != Hot {
		t.Errorf("ParseMode(\"\") = %s, %v; want hot", m, err)
	}
	if _, err := ParseMode("warm"); err == nil {
		t.Error("ParseMode(warm) succeeded")
	}
}

func TestNewReconciler_Validates(t *testing.T) {
	d := &fakeDriver{}
	cases := []struct {
		cfg  ReconcilerConfig
		want string
	}{
		{ReconcilerConfig{Spec: validSpec()}, "driver"},
		{ReconcilerConfig{Driver: d}, "name: required"},
		{ReconcilerConfig{Driver: d, Spec: validSpec(), Mode: "warm"}, "mode"},
		{ReconcilerConfig{Driver: d, Spec: validSpec(), Interval: -1}, "interval"},
	}
	for _, c := range cases {
		_, err := NewReconciler(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewReconciler(%+v) = %v, want error naming %q", c.cfg, err, c.want)
		}
	}
}

func TestReconciler_ColdFollowsActive(t *testing.T) {
	rec := &recorder{}
	r, err := NewReconciler(ReconcilerConfig{Driver: &fakeDriver{EnsureFunc: rec.ensure}, Spec: validSpec(), Mode: Cold, Interval: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	startReconciler(t, r)
	waitFor(t, 5*time.Second, "first Ensure(stopped)", func() bool { c, n := rec.last(); return n >= 1 && c.want == Stopped })
	r.Update(true)
	waitFor(t, 5*time.Second, "Ensure(running) after Update(true)", func() bool { c, _ := rec.last(); return c.want == Running })
	waitFor(t, 5*time.Second, "status running", func() bool { return r.State().Running && r.Status().Want == Running && r.Status().Active })
	r.Update(false)
	waitFor(t, 5*time.Second, "Ensure(stopped) after Update(false)", func() bool { c, _ := rec.last(); return c.want == Stopped })
}

func TestReconciler_HotIgnoresActive(t *testing.T) {
	rec := &recorder{}
	r, err := NewReconciler(ReconcilerConfig{Driver: &fakeDriver{EnsureFunc: rec.ensure}, Spec: validSpec(), Interval: 10 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	startReconciler(t, r)
	r.Update(true)
	r.Update(false)
	r.Update(true)
	// The interval makes it resync; every call wants Running.
	waitFor(t, 5*time.Second, "several resyncs", func() bool { _, n := rec.last(); return n >= 5 })
	for i, c := range rec.snapshot() {
		if c.want != Running {
			t.Fatalf("call %d wants %s in hot mode", i, c.want)
		}
	}
}

func TestReconciler_RetriesWithBackoffAndRecovers(t *testing.T) {
	rec := &recorder{}
	rec.setFail(fmt.Errorf("%w: inspect: cannot connect", ErrUnavailable))
	r, err := NewReconciler(ReconcilerConfig{
		Driver: &fakeDriver{EnsureFunc: rec.ensure}, Spec: validSpec(), Interval: time.Hour,
		Backoff: Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	startReconciler(t, r)
	// With a one-hour interval only the backoff can produce retries.
	waitFor(t, 5*time.Second, "three failed attempts", func() bool { return r.Status().Failures >= 3 })
	st := r.Status()
	if !errors.Is(st.Err, ErrUnavailable) {
		t.Fatalf("status error %v, want ErrUnavailable", st.Err)
	}
	if st.State.Status != StatusUnavailable || !strings.HasPrefix(st.State.Error, "runtime unavailable: ") {
		t.Fatalf("state while unavailable: %+v", st.State)
	}
	rec.setFail(nil)
	waitFor(t, 5*time.Second, "recovery", func() bool { s := r.Status(); return s.Err == nil && s.State.Running })
	if f := r.Status().Failures; f != 0 {
		t.Fatalf("failures %d after success", f)
	}
}

func TestReconciler_SetSpec(t *testing.T) {
	rec := &recorder{}
	r, err := NewReconciler(ReconcilerConfig{Driver: &fakeDriver{EnsureFunc: rec.ensure}, Spec: validSpec(), Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	startReconciler(t, r)
	waitFor(t, 5*time.Second, "first Ensure", func() bool { _, n := rec.last(); return n >= 1 })
	next := validSpec()
	next.Image = "img:2"
	if err := r.SetSpec(next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "Ensure with the new spec", func() bool { c, _ := rec.last(); return c.spec.Image == "img:2" })
	bad := validSpec()
	bad.Name = ""
	if err := r.SetSpec(bad); err == nil {
		t.Fatal("SetSpec accepted an invalid spec")
	}
}

func TestReconciler_RunStopsWhileEnsureBlocks(t *testing.T) {
	started := make(chan struct{})
	d := &fakeDriver{EnsureFunc: func(ctx context.Context, _ Spec, _ Want) (State, error) {
		close(started)
		<-ctx.Done()
		return State{}, ctx.Err()
	}}
	r, err := NewReconciler(ReconcilerConfig{Driver: d, Spec: validSpec()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Factor: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Delay(i); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %s, want %s", i, got, w*time.Millisecond)
		}
	}
	var zero Backoff
	if zero.Delay(0) != defaultBackoffInitial || zero.Delay(100) != defaultBackoffMax {
		t.Errorf("zero backoff: %s, %s", zero.Delay(0), zero.Delay(100))
	}
}

func TestRetry(t *testing.T) {
	b := Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}
	unavailable := fmt.Errorf("%w: x", ErrUnavailable)
	n := 0
	err := Retry(context.Background(), b, func(context.Context) error {
		n++
		if n < 3 {
			return unavailable
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Retry = %v after %d calls, want nil after 3", err, n)
	}
	// Other errors are not retried.
	n = 0
	other := errors.New("image not found")
	if err := Retry(context.Background(), b, func(context.Context) error { n++; return other }); !errors.Is(err, other) || n != 1 {
		t.Fatalf("Retry = %v after %d calls", err, n)
	}
	// Cancel stops it and keeps the last error.
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = Retry(ctx, b, func(context.Context) error {
		n++
		if n == 2 {
			cancel()
		}
		return unavailable
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Retry after cancel = %v", err)
	}
}

func TestNoneDriver(t *testing.T) {
	var d Driver = NoneDriver{}
	st, err := d.Ensure(context.Background(), validSpec(), Running)
	if err != nil || !st.External || st.Status != StatusExternal {
		t.Fatalf("Ensure = %+v, %v", st, err)
	}
	if _, err := d.Ensure(context.Background(), validSpec(), "paused"); err == nil {
		t.Fatal("Ensure accepted want paused")
	}
	st, err = d.Inspect(context.Background())
	if err != nil || !st.External || st.Status != "managed externally" {
		t.Fatalf("Inspect = %+v, %v", st, err)
	}
	if d.Remove(context.Background()) != nil || d.Close() != nil {
		t.Fatal("Remove/Close failed")
	}
}
