package health

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestLatencyHist_BucketsAreInclusiveUpperBounds(t *testing.T) {
	var h latencyHist
	for _, d := range []time.Duration{
		500 * time.Microsecond, // le 0.001
		time.Millisecond,       // le 0.001: a bound is inclusive
		20 * time.Millisecond,  // le 0.025
		10 * time.Second,       // le 10
		11 * time.Second,       // +Inf only
	} {
		h.observe(d)
	}
	got := h.snapshot()
	if !slices.Equal(got.Bounds, latencyBounds[:]) {
		t.Fatalf("bounds %v", got.Bounds)
	}
	want := []uint64{2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4} // le .001, .0025, ... 10
	if !slices.Equal(got.Counts, want) {
		t.Fatalf("cumulative counts %v, want %v", got.Counts, want)
	}
	if got.Count != 5 || got.SumSeconds < 21.0214 || got.SumSeconds > 21.0216 {
		t.Fatalf("count %d, sum %v", got.Count, got.SumSeconds)
	}
	// LatencyBounds is a copy: changing it changes no histogram.
	b := LatencyBounds()
	b[0] = 99
	if latencyBounds[0] != .001 {
		t.Fatal("LatencyBounds returned the package's array")
	}
}

// sleeper is a Prober that takes d (or until its context ends).
type sleeper struct{ d time.Duration }

func (s sleeper) Probe(ctx context.Context) Sample {
	select {
	case <-time.After(s.d):
		return Sample{OK: true, Output: "slow but fine"}
	case <-ctx.Done():
		return Sample{Output: ctx.Err().Error()}
	}
}

// bucketOf returns the index of the first bound >= d, or -1 above them all.
func bucketOf(d time.Duration) int {
	for i, b := range latencyBounds {
		if d.Seconds() <= b {
			return i
		}
	}
	return -1
}

// checkLatency checks that h holds n samples, the last of which took last,
// and that every sample took at least 20 ms.
func checkLatency(t *testing.T, where string, h *Histogram, n uint64, last time.Duration) {
	t.Helper()
	if h == nil {
		t.Fatalf("%s: no latency histogram", where)
	}
	if h.Count != n || len(h.Counts) != len(latencyBounds) {
		t.Fatalf("%s: count %d (want %d), %d buckets", where, h.Count, n, len(h.Counts))
	}
	if h.SumSeconds < float64(n)*0.020 || h.SumSeconds < last.Seconds() {
		t.Fatalf("%s: sum %vs for %d samples of >= 20 ms, the last %v", where, h.SumSeconds, n, last)
	}
	for i, b := range latencyBounds {
		if b < 0.020 && h.Counts[i] != 0 {
			t.Fatalf("%s: %d samples <= %vs, but each sleeps 20 ms: %v", where, h.Counts[i], b, h.Counts)
		}
		if i > 0 && h.Counts[i] < h.Counts[i-1] {
			t.Fatalf("%s: counts not cumulative: %v", where, h.Counts)
		}
	}
	if i := bucketOf(last); i >= 0 && h.Counts[i] == 0 {
		t.Fatalf("%s: the last sample (%v) is not in the le=%v bucket: %v", where, last, latencyBounds[i], h.Counts)
	}
	if h.Counts[len(h.Counts)-1] > h.Count {
		t.Fatalf("%s: le=10 holds %d of %d samples", where, h.Counts[len(h.Counts)-1], h.Count)
	}
}

func TestRunner_RecordsSampleDurations(t *testing.T) {
	cc := scriptedCheck("slow", true)
	h := startHarness(t, []CheckConfig{cc}, map[string]Prober{"slow": sleeper{20 * time.Millisecond}}, Deps{})

	res := h.result(0)
	if res.Duration < 20*time.Millisecond || res.Duration >= cc.Timeout {
		t.Fatalf("duration of a 20 ms sample: %v", res.Duration)
	}
	checkLatency(t, "first sample", res.Latency, 1, res.Duration)
	if res.Latency.SumSeconds != res.Duration.Seconds() {
		t.Fatalf("sum %v of one sample of %v", res.Latency.SumSeconds, res.Duration)
	}
	if bucketOf(res.Duration) == 4 && res.Latency.Counts[4] != 1 { // the usual case: 20-25 ms
		t.Fatalf("a 20 ms sample is not in le=0.025: %v", res.Latency.Counts)
	}

	h.tick(1)
	res = h.result(0)
	checkLatency(t, "second sample", res.Latency, 2, res.Duration)
	lat := h.r.Latencies()
	if got := lat["exec:slow"]; got.Count != 2 || got.SumSeconds != res.Latency.SumSeconds || !slices.Equal(got.Counts, res.Latency.Counts) {
		t.Fatalf("Latencies() %+v, Report %+v", lat, res.Latency)
	}

	// An injected sample probes nothing: it adds no observation, and the
	// last duration is zero.
	if err := h.r.Inject("slow", StatusFailing, h.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.waitSamples(3)
	res = h.result(0)
	if !res.Injected || res.Duration != 0 || res.Latency.Count != 2 {
		t.Fatalf("injected sample: duration %v, latency %+v", res.Duration, res.Latency)
	}

	// The report carries both in its JSON, duration_ns left out when zero.
	raw, err := json.Marshal(h.r.Report())
	if err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Checks []map[string]json.RawMessage `json:"checks"`
	}
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	if _, ok := decoded.Checks[0]["duration_ns"]; ok {
		t.Errorf("duration_ns of an injected sample is in the JSON: %s", raw)
	}
	var jh Histogram
	if err := json.Unmarshal(decoded.Checks[0]["latency"], &jh); err != nil || jh.Count != 2 || !slices.Equal(jh.Bounds, latencyBounds[:]) {
		t.Fatalf("latency in the JSON: %+v, %v: %s", jh, err, raw)
	}

	if err := h.r.ClearInjection("slow"); err != nil {
		t.Fatal(err)
	}
	h.waitSamples(4)
	res = h.result(0)
	checkLatency(t, "after the injection", res.Latency, 3, res.Duration)
	if res.Duration < 20*time.Millisecond {
		t.Fatalf("duration after the injection: %v", res.Duration)
	}
	raw, _ = json.Marshal(res)
	var withDur struct {
		DurationNS int64 `json:"duration_ns"`
	}
	if json.Unmarshal(raw, &withDur) != nil || time.Duration(withDur.DurationNS) != res.Duration {
		t.Fatalf("duration_ns in %s, want %d", raw, res.Duration)
	}
}

func TestRunner_LatencyBeforeTheFirstSample(t *testing.T) {
	r, err := newRunner(Config{Checks: []CheckConfig{scriptedCheck("svc", true)}}, Deps{Clock: newFakeClock(t0)},
		map[string]Prober{"svc": &script{outcomes: []bool{true}}})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Report().Checks[0]
	if res.Duration != 0 || res.Latency == nil || res.Latency.Count != 0 || len(res.Latency.Counts) != len(latencyBounds) {
		t.Fatalf("before the first sample: duration %v, latency %+v", res.Duration, res.Latency)
	}
}
