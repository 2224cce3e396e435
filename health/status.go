package health

import (
	"fmt"
	"time"

	"github.com/newbieha/newbieha/health/gpu"
)

// Status is the state of one check after rise/fall, or the outcome an
// injection forces.
type Status string

// The statuses a check can have.
const (
	// StatusUnknown is a check's state until its first transition: it has not
	// yet seen Rise consecutive successes nor Fall consecutive failures.
	StatusUnknown Status = "unknown"
	// StatusPassing follows Rise consecutive successful samples.
	StatusPassing Status = "passing"
	// StatusFailing follows Fall consecutive failed samples.
	StatusFailing Status = "failing"
)

// String returns the status's name.
func (s Status) String() string { return string(s) }

// Valid reports whether s is one of the three statuses.
func (s Status) Valid() bool {
	return s == StatusUnknown || s == StatusPassing || s == StatusFailing
}

// Result is the state of one check as the Runner last computed it.
type Result struct {
	// Name and Kind identify the check; ID() joins them as "kind:name".
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Required is true when the check counts towards Healthy.
	Required bool `json:"required"`
	// Status is the state after rise/fall.
	Status Status `json:"status"`
	// Output describes the last sample: an HTTP status line, the tail of a
	// command's output, the GPU problems found. Bounded to MaxOutput bytes.
	Output string `json:"output"`
	// OK is the outcome of the last sample (false before the first).
	OK bool `json:"ok"`
	// Since is the time of the last status change (the Runner's start for a
	// check still unknown).
	Since time.Time `json:"since"`
	// LastRun is when the last sample finished; zero before the first.
	LastRun time.Time `json:"last_run,omitzero"`
	// ConsecutiveOK and ConsecutiveFail count the current run of equal
	// sample outcomes; one of them is always zero.
	ConsecutiveOK   int `json:"consecutive_ok"`
	ConsecutiveFail int `json:"consecutive_fail"`
	// Duration is how long the last sample's probe took, measured on the
	// monotonic clock around the probe (so a timed-out probe takes about its
	// timeout). Zero before the first sample and for an injected one.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Latency is the histogram of every probe's duration since the Runner
	// was built; a Runner always sets it (all zero before the first sample).
	Latency *Histogram `json:"latency,omitempty"`
	// Injected is true while a drill injection forces this check's samples;
	// InjectedUntil is when it ends.
	Injected      bool      `json:"injected,omitempty"`
	InjectedUntil time.Time `json:"injected_until,omitzero"`
}

// ID returns the check's identifier "kind:name", the form reasons use (for
// example "http:health").
func (r Result) ID() string { return checkID(r.Kind, r.Name) }

func checkID(kind Kind, name string) string { return fmt.Sprintf("%s:%s", kind, name) }

// Verdict is the overall health of a node: healthy when every required
// check is passing.
type Verdict struct {
	// Healthy is true when every required check is passing (and also when
	// no check is required).
	Healthy bool `json:"healthy"`
	// Reason is empty when healthy; otherwise the ID ("kind:name") of the
	// first required check, in configuration order, that is failing, or, if
	// none is failing, of the first one that is still unknown.
	Reason string `json:"reason,omitempty"`
	// ReasonStatus is the status of the check Reason names.
	ReasonStatus Status `json:"reason_status,omitempty"`
}

// Report is a snapshot of every check and the verdict.
type Report struct {
	Verdict
	// Checks holds one Result per configured check, in configuration order.
	Checks []Result `json:"checks"`
	// GPU is the telemetry the last GPU check read (nil without a GPU check
	// or before its first run); GPUError is why that read failed, if it did.
	GPU      []gpu.Device `json:"gpu,omitempty"`
	GPUError string       `json:"gpu_error,omitempty"`
	// DroppedChanges counts status changes not delivered on Changes because
	// its buffer was full.
	DroppedChanges uint64 `json:"dropped_changes,omitempty"`
	// At is when the report was taken.
	At time.Time `json:"at"`
}
