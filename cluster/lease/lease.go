package lease

import (
	"errors"
	"fmt"
	"time"
)

// Time is a reading of a node's own monotonic clock (CLOCK_BOOTTIME): the
// time since an arbitrary origin. Readings of different nodes are never
// compared with each other.
type Time = time.Duration

// Limits on the lease timings, independent of any settings, so that a
// restarted voter can wait out every grant it may have given before it
// restarted without knowing the settings of that time.
const (
	// MaxDuration is the longest lease a voter grants.
	MaxDuration = 3 * time.Second
	// MaxDrift is the largest clock-drift margin a voter adds.
	MaxDrift = 300 * time.Millisecond
	// Quarantine is how long a voter grants nothing after it starts: any
	// grant it gave before a restart has run out by then.
	Quarantine = MaxDuration + MaxDrift
)

// Params are the lease timings from the replicated settings.
type Params struct {
	// Duration (L) is the lease a holder asks for: its fence deadline is
	// t_s + L.
	Duration time.Duration
	// Drift (ε) is added by a voter to every grant it measures, to cover
	// the difference in clock rates between holder and voter.
	Drift time.Duration
	// Renew (R) is the time between two lease rounds of the holder.
	Renew time.Duration
	// Retry is the time between rounds while the holder has no lease
	// (waiting for an old grant to run out, or for a voter to answer).
	Retry time.Duration
}

// DefaultParams are the defaults of the cluster settings.
func DefaultParams() Params {
	return Params{Duration: 500 * time.Millisecond, Drift: 50 * time.Millisecond, Renew: 100 * time.Millisecond, Retry: 20 * time.Millisecond}
}

// ParamError names the lease setting that is out of range.
type ParamError struct {
	// Field is the setting's key (lease_duration, ...).
	Field string
	// Msg says what is wrong with its value.
	Msg string
}

func (e *ParamError) Error() string { return e.Field + ": " + e.Msg }

// Validate reports the first problem, naming the setting.
func (p Params) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ParamError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case p.Duration < 50*time.Millisecond || p.Duration > MaxDuration:
		return bad("lease_duration", "%v must be 50ms-%v", p.Duration, MaxDuration)
	case p.Drift < 0 || p.Drift > MaxDrift:
		return bad("lease_drift", "%v must be 0-%v", p.Drift, MaxDrift)
	case p.Drift*20 < p.Duration:
		return bad("lease_drift", "%v must be at least 5%% of lease_duration %v (clocks drift)", p.Drift, p.Duration)
	case p.Renew < 5*time.Millisecond:
		return bad("lease_renew_interval", "%v must be at least 5ms", p.Renew)
	case p.Renew*3 > p.Duration:
		return bad("lease_renew_interval", "%v must be at most a third of lease_duration %v, so two rounds can fail before the lease runs out", p.Renew, p.Duration)
	case p.Retry < time.Millisecond || p.Retry > p.Renew:
		return bad("lease_retry_interval", "%v must be 1ms-lease_renew_interval (%v)", p.Retry, p.Renew)
	}
	return nil
}

// View is what a node's applied replicated state says about the active
// role.
type View struct {
	// Active is the node the state names active ("" for nobody).
	Active string
	// Epoch is the epoch of that assignment.
	Epoch uint64
	// ActiveIsGPU is true when Active is a GPU member.
	ActiveIsGPU bool
}

// Request is a holder's lease request, or its release, to one voter.
type Request struct {
	// From is the holder.
	From string `json:"from"`
	// Epoch is the epoch in which From believes itself active.
	Epoch uint64 `json:"epoch"`
	// Nonce identifies the round; the answer echoes it.
	Nonce uint64 `json:"nonce"`
	// Duration is the lease asked for (L); the voter adds its drift margin.
	Duration time.Duration `json:"duration"`
	// Release says From has set its fence deadline to the past and removed
	// the VIP: the voter may drop its grant for From of epoch <= Epoch if
	// it was given for round Nonce (the last one From knows the voter
	// granted), so a late release of an earlier run of From never drops a
	// grant to a later run.
	Release bool `json:"release,omitempty"`
}

// Validate checks a request from the wire.
func (r Request) Validate() error {
	switch {
	case r.From == "":
		return errors.New("lease request: from is empty")
	case r.Epoch == 0:
		return errors.New("lease request: epoch 0")
	case !r.Release && (r.Duration <= 0 || r.Duration > MaxDuration):
		return fmt.Errorf("lease request: duration %v must be in (0, %v]", r.Duration, MaxDuration)
	}
	return nil
}

// Answer is a voter's reply to a Request.
type Answer struct {
	// Voter is the voter that answers.
	Voter string `json:"voter"`
	// To, Epoch and Nonce echo the request.
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"`
	Nonce uint64 `json:"nonce"`
	// Granted is true when the voter granted the lease.
	Granted bool `json:"granted"`
	// Reason says why not, when refused.
	Reason string `json:"reason,omitempty"`
}

// Majority is the number of voters out of n that make a majority.
func Majority(n int) int { return n/2 + 1 }
