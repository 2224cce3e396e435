package health

import (
	"slices"
	"time"
)

// latencyBounds are the upper bounds, in seconds, of every check's latency
// histogram. Checks take from about 1 ms (an HTTP probe of a local server)
// to 10 s (a generate probe or a script near a long timeout): the bounds are
// Prometheus' default buckets (client_golang's DefBuckets, 5 ms to 10 s,
// steps of 1-2.5-5 per decade) with 1 ms and 2.5 ms added below. A sample
// slower than 10 s is counted only in Count (the +Inf bucket).
var latencyBounds = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// LatencyBounds returns the upper bounds, in seconds and ascending, of the
// buckets of every check's latency histogram (Histogram.Bounds).
func LatencyBounds() []float64 { return slices.Clone(latencyBounds[:]) }

// Histogram is a snapshot of one check's cumulative histogram of sample
// durations, kept by the Runner from its start: the shape of a Prometheus
// histogram, so a metrics exporter turns it into one as it is.
type Histogram struct {
	// Bounds are the buckets' upper bounds in seconds, ascending (the
	// values of LatencyBounds).
	Bounds []float64 `json:"le"`
	// Counts[i] is the number of samples that took at most Bounds[i]:
	// cumulative, as Prometheus buckets are. The +Inf bucket is Count.
	Counts []uint64 `json:"counts"`
	// Count is the number of samples observed.
	Count uint64 `json:"count"`
	// SumSeconds is the total duration of the samples observed, in seconds.
	SumSeconds float64 `json:"sum_seconds"`
}

// latencyHist accumulates sample durations in the fixed latencyBounds
// buckets; the zero value is empty. It is not safe for concurrent use (the
// Runner's mutex guards it).
type latencyHist struct {
	buckets [len(latencyBounds)]uint64 // per bucket, not cumulative
	count   uint64
	sum     float64
}

// observe counts one sample that took d.
func (h *latencyHist) observe(d time.Duration) {
	s := d.Seconds()
	// The first bound >= s: bounds are inclusive ("le"), as in Prometheus.
	if i, _ := slices.BinarySearch(latencyBounds[:], s); i < len(latencyBounds) {
		h.buckets[i]++
	}
	h.count++
	h.sum += s
}

// snapshot returns a copy with cumulative counts.
func (h *latencyHist) snapshot() *Histogram {
	out := &Histogram{
		Bounds:     LatencyBounds(),
		Counts:     make([]uint64, len(latencyBounds)),
		Count:      h.count,
		SumSeconds: h.sum,
	}
	var cum uint64
	for i, n := range h.buckets {
		cum += n
		out.Counts[i] = cum
	}
	return out
}
