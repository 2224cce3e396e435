package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Liveness: the agent's main loops (the controller's and the lease
// runner's) record a beat at the top of every iteration, and Alive reports
// the first one whose last beat is older than a bound. cmd pings the
// systemd watchdog only while Alive holds, so a wedged loop (a deadlock, a
// call that never returns) ends in a restart by systemd instead of a node
// that looks up but neither renews its lease nor decides anything.
//
// The beats travel in the agent's context (a.ctx, which both loops
// already take) rather than in a field of each loop's struct: a loop
// records one with beat(ctx, name), one line, and a loop run with a plain
// context (a unit test) records nothing. The set of loops Alive expects is
// fixed here, so a loop that never starts is reported as well as one that
// stops.

// Loop names, as beat records them and Alive reports them.
const (
	loopController = "controller"
	loopLease      = "lease"
)

// livenessLoops are the loops Alive requires to be ticking. Each wakes at
// least every second when idle (a follower's controller, a witness's lease
// runner); a leader's controller step may block for about ApplyTimeout
// plus PeerTimeout (a barrier or a commit to a slow quorum), which is why
// the bound cmd passes is the watchdog interval, 10 s in the shipped units.
func livenessLoops() []string { return []string{loopController, loopLease} }

// beatsKey is the context key of an agent's *loopBeats.
type beatsKey struct{}

// loopBeats holds the time of each loop's last beat.
type loopBeats struct {
	now     func() time.Time
	started time.Time // when the agent started: the age of a loop that never beat

	mu   sync.Mutex
	last map[string]time.Time
}

// withBeats returns ctx carrying a fresh beat record that reads the clock
// with now (time.Now in an agent: its monotonic reading).
func withBeats(ctx context.Context, now func() time.Time) context.Context {
	return context.WithValue(ctx, beatsKey{}, &loopBeats{now: now, started: now(), last: map[string]time.Time{}})
}

// beat records that loop is alive now, if ctx carries a beat record.
func beat(ctx context.Context, loop string) {
	b, ok := ctx.Value(beatsKey{}).(*loopBeats)
	if !ok {
		return
	}
	t := b.now()
	b.mu.Lock()
	b.last[loop] = t
	b.mu.Unlock()
}

// ErrNotAlive means an agent loop has stalled or the agent is stopping;
// Alive wraps it with the loop's name and how long it has been silent.
var ErrNotAlive = errors.New("agent not alive")

// Alive returns nil when each of the agent's main loops (controller, lease)
// has begun an iteration within maxAge, and otherwise an error wrapping
// ErrNotAlive that names every stalled loop and its silence. It also fails
// once the agent has begun to close, as its loops are ending. cmd calls it
// before each systemd watchdog ping.
func (a *Agent) Alive(maxAge time.Duration) error {
	if a.ctx == nil || a.ctx.Err() != nil {
		return fmt.Errorf("%w: stopping", ErrNotAlive)
	}
	b, ok := a.ctx.Value(beatsKey{}).(*loopBeats)
	if !ok {
		return fmt.Errorf("%w: no loop records beats", ErrNotAlive)
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, loop := range livenessLoops() {
		last, seen := b.last[loop]
		if !seen {
			last = b.started
		}
		if age := now.Sub(last); age > maxAge {
			what := "has not ticked"
			if !seen {
				what = "has not ticked once"
			}
			errs = append(errs, fmt.Errorf("%w: %s loop %s for %v (max %v)", ErrNotAlive, loop, what, age.Round(time.Millisecond), maxAge))
		}
	}
	return errors.Join(errs...)
}
