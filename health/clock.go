package health

import "time"

// Clock is the Runner's source of time: sample and status-change times, and
// the wait between samples. Tests inject a fake one; nil means the system
// clock. Check timeouts and sample durations are always real time (they
// bound and measure real I/O).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// systemClock is Clock on package time.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
