package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// manualClock is a clock that moves only when told.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestAlive_NamesTheStalledLoop(t *testing.T) {
	clk := &manualClock{t: time.Unix(1000, 0)}
	ctx, cancel := context.WithCancel(withBeats(context.Background(), clk.now))
	defer cancel()
	a := &Agent{ctx: ctx, cancel: cancel}

	// Just started: no loop has ticked yet, but none is late either.
	if err := a.Alive(10 * time.Second); err != nil {
		t.Fatalf("Alive at start: %v", err)
	}
	clk.advance(11 * time.Second)
	err := a.Alive(10 * time.Second)
	if !errors.Is(err, ErrNotAlive) || !strings.Contains(err.Error(), "controller loop has not ticked once") || !strings.Contains(err.Error(), "lease loop has not ticked once") {
		t.Fatalf("Alive with no loop ever ticking = %v; want both loops named", err)
	}

	beat(ctx, loopController)
	beat(ctx, loopLease)
	if err := a.Alive(10 * time.Second); err != nil {
		t.Fatalf("Alive right after both loops ticked: %v", err)
	}

	// The lease loop goes on ticking; the controller stalls.
	for range 4 {
		clk.advance(3 * time.Second)
		beat(ctx, loopLease)
	}
	err = a.Alive(10 * time.Second)
	if !errors.Is(err, ErrNotAlive) {
		t.Fatalf("Alive with the controller silent for 12s = %v; want ErrNotAlive", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "controller loop has not ticked for 12s (max 10s)") || strings.Contains(msg, "lease") {
		t.Fatalf("Alive = %q; want only the controller named, silent 12s", msg)
	}
	if err := a.Alive(15 * time.Second); err != nil {
		t.Fatalf("Alive with a bound above the silence: %v", err)
	}

	beat(ctx, loopController)
	if err := a.Alive(10 * time.Second); err != nil {
		t.Fatalf("Alive once the controller ticks again: %v", err)
	}

	cancel()
	if err := a.Alive(time.Hour); !errors.Is(err, ErrNotAlive) || !strings.Contains(err.Error(), "stopping") {
		t.Fatalf("Alive of a closing agent = %v; want ErrNotAlive (stopping)", err)
	}
}

// A plain context (a loop under a unit test) carries no record: beat does
// nothing, and an agent without one is not alive.
func TestAlive_WithoutBeatRecord(t *testing.T) {
	beat(context.Background(), loopController) // must not panic
	a := &Agent{ctx: context.Background()}
	if err := a.Alive(time.Hour); !errors.Is(err, ErrNotAlive) {
		t.Fatalf("Alive without a beat record = %v; want ErrNotAlive", err)
	}
}

// The real loops of a started agent beat: with a bound of a few of their
// idle periods (a second each) it is alive while running and not once closed.
func TestAlive_StartedAgent(t *testing.T) {
	c := newTestCluster(t)
	n := c.init("node1", "127.0.0.1")
	waitFor(t, 10*time.Second, "node1's loops to tick", func() error { return n.agent.Alive(3 * time.Second) })
	b := n.agent.ctx.Value(beatsKey{}).(*loopBeats)
	b.mu.Lock()
	got := len(b.last)
	b.mu.Unlock()
	if got != len(livenessLoops()) {
		t.Fatalf("%d loops beat, want %d (%v)", got, len(livenessLoops()), livenessLoops())
	}
	a := n.agent
	c.stop("node1")
	if err := a.Alive(time.Hour); !errors.Is(err, ErrNotAlive) {
		t.Fatalf("Alive after Close = %v; want ErrNotAlive", err)
	}
}
