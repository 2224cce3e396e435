package health

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/newbieha/newbieha/health/gpu"
)

// This file holds the pure policy: functions of their arguments only (the
// time is passed in), table-tested without goroutines, clocks or I/O.

// State is the rise/fall state of one check.
type State struct {
	// Status is the current status.
	Status Status
	// ConsecutiveOK and ConsecutiveFail count the current run of equal
	// sample outcomes; a sample of the other outcome resets the count.
	ConsecutiveOK   int
	ConsecutiveFail int
	// Since is when Status last changed.
	Since time.Time
}

// NewState returns the state of a check that has not run yet: unknown since
// now.
func NewState(now time.Time) State { return State{Status: StatusUnknown, Since: now} }

// Step applies one sample outcome to s. A check that is not passing becomes
// passing after rise consecutive successes; one that is not failing becomes
// failing after fall consecutive failures. That holds from unknown too: the
// first verdict needs the same evidence as any later change. changed reports
// a status change, in which case next.Since is now.
func Step(s State, ok bool, rise, fall int, now time.Time) (next State, changed bool) {
	next = s
	if ok {
		next.ConsecutiveOK++
		next.ConsecutiveFail = 0
		if next.Status != StatusPassing && next.ConsecutiveOK >= rise {
			next.Status, next.Since = StatusPassing, now
		}
	} else {
		next.ConsecutiveFail++
		next.ConsecutiveOK = 0
		if next.Status != StatusFailing && next.ConsecutiveFail >= fall {
			next.Status, next.Since = StatusFailing, now
		}
	}
	return next, next.Status != s.Status
}

// Evaluate returns the verdict over results: healthy when every required
// check is passing. The reason names the first required check, in the
// order given, that is failing; if none is failing, the first one that is
// still unknown. Informational checks never affect the verdict.
func Evaluate(results []Result) Verdict {
	var unknown *Result
	for i := range results {
		r := &results[i]
		if !r.Required || r.Status == StatusPassing {
			continue
		}
		if r.Status == StatusFailing {
			return Verdict{Healthy: false, Reason: r.ID(), ReasonStatus: StatusFailing}
		}
		if unknown == nil {
			unknown = r
		}
	}
	if unknown != nil {
		return Verdict{Healthy: false, Reason: unknown.ID(), ReasonStatus: unknown.Status}
	}
	return Verdict{Healthy: true}
}

// EvaluateGPU applies the thresholds of g to one telemetry read and the Xid
// events seen, and returns the problems found, one sentence each; none means
// the GPU check's sample succeeds. Zero thresholds take their defaults and
// negative ones are off, as GPUConfig documents. Events older than the Xid
// window before now are ignored.
func EvaluateGPU(g GPUConfig, devs []gpu.Device, xids []gpu.XidEvent, now time.Time) []string {
	g = g.withDefaults()
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	switch {
	case g.ExpectedDevices > 0 && len(devs) != g.ExpectedDevices:
		add("found %d GPUs, expected %d", len(devs), g.ExpectedDevices)
	case len(devs) == 0:
		add("no GPU found")
	}
	for _, d := range devs {
		label := deviceLabel(d)
		if !d.Answering() {
			add("%s not answering: %s", label, strings.Join(d.Errors, "; "))
		}
		if g.MaxTemperatureC > 0 && !slices.Contains(d.Unsupported, "temperature") && int64(d.TemperatureC) > int64(g.MaxTemperatureC) {
			add("%s temperature %d°C > %d°C", label, d.TemperatureC, g.MaxTemperatureC)
		}
		if g.MaxECCUncorrected >= 0 && d.ECCUncorrected > uint64(g.MaxECCUncorrected) {
			add("%s has %d uncorrected ECC errors (max %d)", label, d.ECCUncorrected, g.MaxECCUncorrected)
		}
		if g.MaxRetiredPages >= 0 && d.RetiredPages > g.MaxRetiredPages {
			add("%s has %d retired pages (max %d)", label, d.RetiredPages, g.MaxRetiredPages)
		}
		if d.RemapFailed {
			add("%s row remapping failed: the GPU needs service", label)
		}
		if d.RemapPending && !g.IgnorePendingRemap {
			add("%s has a row remap pending: it needs a GPU reset", label)
		}
		if g.MinFreeMemoryMiB > 0 && d.MemoryTotalBytes > 0 && d.MemoryFreeBytes < uint64(g.MinFreeMemoryMiB)*gpu.MiB {
			add("%s has %d MiB free (min %d MiB)", label, d.MemoryFreeBytes/gpu.MiB, g.MinFreeMemoryMiB)
		}
	}
	if g.XidWindow > 0 {
		cutoff := now.Add(-g.XidWindow)
		type key struct {
			index int
			xid   uint64
		}
		latest := map[key]gpu.XidEvent{}
		var order []key
		for _, e := range xids {
			if e.Time.Before(cutoff) || !slices.Contains(g.CriticalXids, e.Xid) {
				continue
			}
			k := key{e.Index, e.Xid}
			if _, seen := latest[k]; !seen {
				order = append(order, k)
			}
			latest[k] = e
		}
		for _, k := range order {
			e := latest[k]
			add("gpu%d critical Xid %d at %s", e.Index, e.Xid, e.Time.UTC().Format(time.RFC3339))
		}
	}
	return problems
}

// deviceLabel names a device in problem sentences: "gpu0" or
// "gpu0 (GPU-5d9e1a2b…)": the UUID cut after its first 8 hex digits.
func deviceLabel(d gpu.Device) string {
	if d.UUID == "" {
		return fmt.Sprintf("gpu%d", d.Index)
	}
	u := d.UUID
	if len(u) > 12 {
		u = u[:12] + "…"
	}
	return fmt.Sprintf("gpu%d (%s)", d.Index, u)
}

// SummarizeGPU describes a telemetry read that passed the thresholds, for a
// check's output: count, names, hottest device, least free memory.
func SummarizeGPU(devs []gpu.Device) string {
	if len(devs) == 0 {
		return "no GPU"
	}
	var maxTemp uint32
	minFree := devs[0].MemoryFreeBytes
	names := map[string]int{}
	var order []string
	for _, d := range devs {
		maxTemp = max(maxTemp, d.TemperatureC)
		minFree = min(minFree, d.MemoryFreeBytes)
		if names[d.Name] == 0 {
			order = append(order, d.Name)
		}
		names[d.Name]++
	}
	var parts []string
	for _, n := range order {
		parts = append(parts, fmt.Sprintf("%d× %s", names[n], n))
	}
	return fmt.Sprintf("%d GPUs ok (%s); hottest %d°C; least free %d MiB",
		len(devs), strings.Join(parts, ", "), maxTemp, minFree/gpu.MiB)
}

// withDefaults fills the zero thresholds with their defaults.
func (g GPUConfig) withDefaults() GPUConfig {
	if g.MaxTemperatureC == 0 {
		g.MaxTemperatureC = DefaultMaxTemperatureC
	}
	if g.MaxRetiredPages == 0 {
		g.MaxRetiredPages = DefaultMaxRetiredPages
	}
	if g.CriticalXids == nil {
		g.CriticalXids = DefaultCriticalXids
	}
	g.CriticalXids = slices.Clone(g.CriticalXids)
	if g.XidWindow == 0 {
		g.XidWindow = DefaultXidWindow
	}
	return g
}
