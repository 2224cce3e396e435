package runtime

// Against the real Docker Engine (skips without a daemon), like
// docker_test.go.

import (
	"context"
	"testing"
	"time"
)

// A stopped or paused container stays so while the reconciler is held,
// although its interval (100 ms) would put it back at once; at the hold's
// end, or at Release, it runs and answers again.
func TestDocker_SuspendWithTheReconcilerHeld(t *testing.T) {
	e := newTestEnv(t)
	d := e.driver("node1")
	spec, port := e.spec("node1")
	r, err := NewReconciler(ReconcilerConfig{Driver: d, Spec: spec, Interval: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	startReconciler(t, r)
	answers := func() bool { n, err := getServedBy(port); return err == nil && n == "node1" }
	waitFor(t, time.Minute, "the stub answering", answers)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	until := time.Now().Add(2 * time.Second)
	st, err := r.Suspend(ctx, SuspendStop, until)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.Status != "exited" {
		t.Fatalf("after stop: %+v", st)
	}
	time.Sleep(time.Until(until) - 500*time.Millisecond)
	if info := e.inspectRaw(st.ContainerID); info.State.Running {
		t.Fatal("the reconciler started the container during the hold")
	}
	waitFor(t, 20*time.Second, "the stub answering after the hold", answers)
	if time.Now().Before(until) {
		t.Fatal("answering before the hold's end")
	}

	st, err = r.Suspend(ctx, SuspendPause, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "paused" {
		t.Fatalf("after pause: %+v", st)
	}
	time.Sleep(300 * time.Millisecond)
	if info := e.inspectRaw(st.ContainerID); !info.State.Paused {
		t.Fatal("the reconciler unpaused the container during the hold")
	}
	if _, err := getServedBy(port); err == nil {
		t.Fatal("a paused container answered")
	}
	r.Release()
	waitFor(t, 10*time.Second, "the stub answering after Release", answers)
}
