package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backoff is an exponential backoff: Initial, then times Factor after each
// failure, never above Max. The zero value uses the defaults below.
type Backoff struct {
	// Initial is the first delay; 0 means 500 ms.
	Initial time.Duration
	// Max caps the delay; 0 means 30 s.
	Max time.Duration
	// Factor multiplies the delay after each failure; below 1 means 2.
	Factor float64
}

// Default backoff parameters: a daemon restart usually takes a few seconds,
// so the first retries come quickly and later ones settle at 30 s.
const (
	defaultBackoffInitial = 500 * time.Millisecond
	defaultBackoffMax     = 30 * time.Second
	defaultBackoffFactor  = 2
)

// Delay returns the delay before retry number attempt (0 is the first retry).
func (b Backoff) Delay(attempt int) time.Duration {
	initial, maxD, factor := b.Initial, b.Max, b.Factor
	if initial <= 0 {
		initial = defaultBackoffInitial
	}
	if maxD <= 0 {
		maxD = defaultBackoffMax
	}
	if maxD < initial {
		maxD = initial
	}
	if factor < 1 {
		factor = defaultBackoffFactor
	}
	d := float64(initial)
	for i := 0; i < attempt && d < float64(maxD); i++ {
		d *= factor
	}
	if d > float64(maxD) {
		return maxD
	}
	return time.Duration(d)
}

// Retry calls op until it succeeds, fails with an error that does not wrap
// ErrUnavailable, or ctx ends; between attempts it waits b.Delay. It returns
// op's last error, or, when ctx ended first, ctx's error wrapping it too.
func Retry(ctx context.Context, b Backoff, op func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := op(ctx)
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return err
		}
		t := time.NewTimer(b.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
