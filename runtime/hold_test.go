package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// suspendDriver is a recorder's driver that can also be suspended.
type suspendDriver struct {
	fakeDriver
	mu      sync.Mutex
	stops   int
	pauses  int
	failErr error
}

func (s *suspendDriver) StopService(context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops++
	return State{Exists: true, Status: "exited"}, s.failErr
}

func (s *suspendDriver) PauseService(context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pauses++
	return State{Exists: true, Running: true, Status: "paused"}, s.failErr
}

func newHeldReconciler(t *testing.T, rec *recorder, fail error) (*Reconciler, *suspendDriver) {
	t.Helper()
	d := &suspendDriver{fakeDriver: fakeDriver{EnsureFunc: rec.ensure}, failErr: fail}
	r, err := NewReconciler(ReconcilerConfig{Driver: d, Spec: Spec{Name: "svc", Image: "img"}, Interval: 10 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	startReconciler(t, r)
	waitFor(t, 2*time.Second, "the first Ensure", func() bool { _, n := rec.last(); return n > 0 })
	return r, d
}

// While a drill holds the reconciler, no Ensure runs, although the
// interval is 10 ms; at the hold's end the next Ensure puts the container
// back by itself.
func TestReconciler_SuspendHoldsOffEnsureUntilItsBound(t *testing.T) {
	for _, how := range []Suspension{SuspendStop, SuspendPause} {
		t.Run(string(how), func(t *testing.T) {
			rec := &recorder{}
			r, d := newHeldReconciler(t, rec, nil)
			until := time.Now().Add(300 * time.Millisecond)
			if _, err := r.Suspend(context.Background(), how, until); err != nil {
				t.Fatal(err)
			}
			_, before := rec.last()
			if r.HeldUntil().IsZero() {
				t.Fatal("HeldUntil is zero during the hold")
			}
			time.Sleep(200 * time.Millisecond)
			if _, n := rec.last(); n > before+1 {
				// One Ensure may have been under way when the hold began.
				t.Fatalf("%d Ensure calls during the hold", n-before)
			}
			waitFor(t, 2*time.Second, "Ensure after the hold's end", func() bool { _, n := rec.last(); return n > before+1 })
			if time.Now().Before(until) {
				t.Fatal("Ensure ran before the hold's end")
			}
			if c, _ := rec.last(); c.want != Running {
				t.Fatalf("after the hold Ensure wants %s", c.want)
			}
			if !r.HeldUntil().IsZero() {
				t.Fatal("HeldUntil after the hold's end")
			}
			d.mu.Lock()
			stops, pauses := d.stops, d.pauses
			d.mu.Unlock()
			if (how == SuspendStop) != (stops == 1) || (how == SuspendPause) != (pauses == 1) {
				t.Fatalf("stops %d, pauses %d for %s", stops, pauses, how)
			}
		})
	}
}

// Release (the drill's undo) ends the hold at once.
func TestReconciler_ReleaseEndsTheHoldAtOnce(t *testing.T) {
	rec := &recorder{}
	r, _ := newHeldReconciler(t, rec, nil)
	if _, err := r.Suspend(context.Background(), SuspendStop, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_, before := rec.last()
	released := time.Now()
	r.Release()
	waitFor(t, time.Second, "Ensure after Release", func() bool { _, n := rec.last(); return n > before })
	if took := time.Since(released); took > 200*time.Millisecond {
		t.Fatalf("Ensure %v after Release", took)
	}
	if !r.HeldUntil().IsZero() {
		t.Fatal("still held after Release")
	}
}

// A driver that cannot suspend, a suspension that fails, and bad bounds
// leave no hold behind.
func TestReconciler_SuspendRefusals(t *testing.T) {
	r, err := NewReconciler(ReconcilerConfig{Driver: NoneDriver{}, Spec: Spec{Name: "svc", Image: "img"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Suspend(context.Background(), SuspendStop, time.Now().Add(time.Second)); !errors.Is(err, ErrNotSuspendable) {
		t.Fatalf("NoneDriver: %v", err)
	}

	rec := &recorder{}
	boom := errors.New("daemon says no")
	r2, _ := newHeldReconciler(t, rec, boom)
	if _, err := r2.Suspend(context.Background(), SuspendPause, time.Now().Add(time.Minute)); !errors.Is(err, boom) || !strings.Contains(err.Error(), "pause service") {
		t.Fatalf("failing pause: %v", err)
	}
	if !r2.HeldUntil().IsZero() {
		t.Fatal("a failed suspension left a hold")
	}
	for _, tc := range []struct {
		how   Suspension
		until time.Time
		want  string
	}{
		{SuspendStop, time.Now().Add(-time.Second), "is not within"},
		{SuspendStop, time.Now().Add(2 * MaxHold), "is not within"},
		{"freeze", time.Now().Add(time.Second), `"freeze" is not stop or pause`},
	} {
		if _, err := r2.Suspend(context.Background(), tc.how, tc.until); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Suspend(%s, %v): %v, want %q", tc.how, time.Until(tc.until).Round(time.Second), err, tc.want)
		}
		if !r2.HeldUntil().IsZero() {
			t.Errorf("Suspend(%s) refused but left a hold", tc.how)
		}
	}
}
