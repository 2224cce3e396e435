package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Suspension is how a drill takes the service container out of service
// while the Reconciler holds off (Reconciler.Suspend).
type Suspension string

// The suspensions.
const (
	// SuspendStop stops the container (SIGTERM, then SIGKILL after its
	// stop timeout), as if the service died.
	SuspendStop Suspension = "stop"
	// SuspendPause freezes the container (docker pause): it keeps its
	// sockets, so connections are accepted and never answered.
	SuspendPause Suspension = "pause"
)

// MaxHold is the longest a Reconciler may be held off.
const MaxHold = time.Hour

// ErrNotSuspendable is wrapped when the driver cannot stop or pause the
// container outside Ensure (a service that newbieha does not run).
var ErrNotSuspendable = errors.New("the service is not run by a container driver that can stop or pause it")

// Suspender is a Driver that can take the container out of service
// outside Ensure, for drills. The Docker driver is one.
type Suspender interface {
	// StopService stops the service container; no container of ours is
	// an error.
	StopService(ctx context.Context) (State, error)
	// PauseService freezes the running service container; a container
	// that does not run is an error.
	PauseService(ctx context.Context) (State, error)
}

// Suspend takes the container out of service the way how says and holds
// the Reconciler off until until: no Ensure runs before then, so the
// container stays stopped or paused although it is wanted running. The
// hold ends by itself at until, or at Release; the next Ensure then starts
// or unpauses the container. An error releases the hold at once.
func (r *Reconciler) Suspend(ctx context.Context, how Suspension, until time.Time) (State, error) {
	s, ok := r.driver.(Suspender)
	if !ok {
		return State{}, ErrNotSuspendable
	}
	if d := time.Until(until); d <= 0 || d > MaxHold {
		return State{}, fmt.Errorf("suspend service: until %s is not within %s from now", until.Format(time.RFC3339), MaxHold)
	}
	var act func(context.Context) (State, error)
	switch how {
	case SuspendStop:
		act = s.StopService
	case SuspendPause:
		act = s.PauseService
	default:
		return State{}, fmt.Errorf("suspend service: %q is not %s or %s", how, SuspendStop, SuspendPause)
	}
	// The hold goes first: an Ensure under way finishes before the driver
	// acts (the driver serialises them), and none starts after.
	r.mu.Lock()
	r.holdUntil = until
	r.mu.Unlock()
	st, err := act(ctx)
	if err != nil {
		r.Release()
		return st, fmt.Errorf("%s service: %w", how, err)
	}
	r.log.Warn("service container suspended for a drill; the reconciler holds off", "how", how, "until", until.Format(time.RFC3339Nano))
	return st, nil
}

// Release ends a hold at once (the drill's undo): the Reconciler runs
// Ensure now, which starts or unpauses the container. Without a hold it
// does nothing.
func (r *Reconciler) Release() {
	r.mu.Lock()
	held := !r.holdUntil.IsZero()
	r.holdUntil = time.Time{}
	r.mu.Unlock()
	if held {
		r.log.Info("drill hold on the service container released")
		r.poke()
	}
}

// HeldUntil is the end of the hold under way; zero when none.
func (r *Reconciler) HeldUntil() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.holdUntil.IsZero() && !time.Now().Before(r.holdUntil) {
		return time.Time{}
	}
	return r.holdUntil
}

// heldFor is how long the hold under way still lasts; 0 when none.
func (r *Reconciler) heldFor() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holdUntil.IsZero() {
		return 0
	}
	d := time.Until(r.holdUntil)
	if d <= 0 {
		r.holdUntil = time.Time{}
		return 0
	}
	return d
}
