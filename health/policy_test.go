package health

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/health/gpu"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestStep_RiseFall(t *testing.T) {
	type step struct {
		ok         bool
		wantStatus Status
		wantChange bool
	}
	cases := []struct {
		name       string
		rise, fall int
		start      Status
		steps      []step
	}{
		{"unknown to passing after rise", 2, 3, StatusUnknown, []step{
			{true, StatusUnknown, false}, {true, StatusPassing, true}, {true, StatusPassing, false},
		}},
		{"unknown to failing after fall", 2, 3, StatusUnknown, []step{
			{false, StatusUnknown, false}, {false, StatusUnknown, false}, {false, StatusFailing, true},
		}},
		{"passing survives fall-1 failures", 2, 3, StatusPassing, []step{
			{false, StatusPassing, false}, {false, StatusPassing, false}, {true, StatusPassing, false},
			{false, StatusPassing, false}, {false, StatusPassing, false}, {false, StatusFailing, true},
		}},
		{"failing needs rise consecutive successes", 3, 1, StatusFailing, []step{
			{true, StatusFailing, false}, {true, StatusFailing, false}, {false, StatusFailing, false},
			{true, StatusFailing, false}, {true, StatusFailing, false}, {true, StatusPassing, true},
		}},
		{"rise and fall of one flip at once", 1, 1, StatusUnknown, []step{
			{true, StatusPassing, true}, {false, StatusFailing, true}, {true, StatusPassing, true},
		}},
		{"alternating samples never decide", 2, 2, StatusUnknown, []step{
			{true, StatusUnknown, false}, {false, StatusUnknown, false}, {true, StatusUnknown, false}, {false, StatusUnknown, false},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := State{Status: c.start, Since: t0}
			for i, st := range c.steps {
				now := t0.Add(time.Duration(i+1) * time.Second)
				prev := s
				var changed bool
				s, changed = Step(s, st.ok, c.rise, c.fall, now)
				if s.Status != st.wantStatus || changed != st.wantChange {
					t.Fatalf("step %d (ok=%v): status %s changed %v, want %s %v", i, st.ok, s.Status, changed, st.wantStatus, st.wantChange)
				}
				if changed && !s.Since.Equal(now) {
					t.Fatalf("step %d: Since %v, want %v", i, s.Since, now)
				}
				if !changed && !s.Since.Equal(prev.Since) {
					t.Fatalf("step %d: Since moved without a change", i)
				}
				if st.ok && (s.ConsecutiveFail != 0 || s.ConsecutiveOK != prev.ConsecutiveOK+1) {
					t.Fatalf("step %d: counters %d/%d after success", i, s.ConsecutiveOK, s.ConsecutiveFail)
				}
				if !st.ok && (s.ConsecutiveOK != 0 || s.ConsecutiveFail != prev.ConsecutiveFail+1) {
					t.Fatalf("step %d: counters %d/%d after failure", i, s.ConsecutiveOK, s.ConsecutiveFail)
				}
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	r := func(kind Kind, name string, req bool, st Status) Result {
		return Result{Kind: kind, Name: name, Required: req, Status: st}
	}
	cases := []struct {
		name    string
		results []Result
		want    Verdict
	}{
		{"no checks is healthy", nil, Verdict{Healthy: true}},
		{"all required passing", []Result{r(KindHTTP, "health", true, StatusPassing), r(KindGPU, "gpu", true, StatusPassing)}, Verdict{Healthy: true}},
		{"informational failing does not count", []Result{r(KindHTTP, "health", true, StatusPassing), r(KindExec, "disk", false, StatusFailing)}, Verdict{Healthy: true}},
		{"first failing required named", []Result{
			r(KindHTTP, "health", true, StatusPassing), r(KindGPU, "gpu", true, StatusFailing), r(KindExec, "x", true, StatusFailing),
		}, Verdict{Reason: "gpu:gpu", ReasonStatus: StatusFailing}},
		{"failing preferred over an earlier unknown", []Result{
			r(KindHTTP, "health", true, StatusUnknown), r(KindContainer, "model", true, StatusFailing),
		}, Verdict{Reason: "container:model", ReasonStatus: StatusFailing}},
		{"unknown required is not healthy", []Result{
			r(KindHTTP, "health", true, StatusUnknown), r(KindGPU, "gpu", true, StatusUnknown),
		}, Verdict{Reason: "http:health", ReasonStatus: StatusUnknown}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Evaluate(c.results); got != c.want {
				t.Fatalf("Evaluate = %+v, want %+v", got, c.want)
			}
		})
	}
}

// h200 is a healthy H200 as NVML reports it.
func h200(i int) gpu.Device {
	return gpu.Device{
		Index: i, Name: "NVIDIA H200", UUID: "GPU-0123456789abcdef", DriverVersion: "550.54.15",
		MemoryTotalBytes: 141 << 30, MemoryFreeBytes: 100 << 30, MemoryUsedBytes: 41 << 30,
		TemperatureC: 45, PowerW: 300,
	}
}

func TestEvaluateGPU(t *testing.T) {
	with := func(f func(d *gpu.Device)) []gpu.Device {
		d := h200(0)
		f(&d)
		return []gpu.Device{d}
	}
	xid := func(x uint64, age time.Duration) gpu.XidEvent {
		return gpu.XidEvent{Time: t0.Add(-age), Index: 0, Xid: x}
	}
	cases := []struct {
		name string
		cfg  GPUConfig
		devs []gpu.Device
		xids []gpu.XidEvent
		want []string // substrings, one per expected problem, in order
	}{
		{"healthy with defaults", GPUConfig{}, []gpu.Device{h200(0), h200(1)}, nil, nil},
		{"no device", GPUConfig{}, nil, nil, []string{"no GPU found"}},
		{"wrong count", GPUConfig{ExpectedDevices: 2}, []gpu.Device{h200(0)}, nil, []string{"found 1 GPUs, expected 2"}},
		{"right count", GPUConfig{ExpectedDevices: 2}, []gpu.Device{h200(0), h200(1)}, nil, nil},
		{"not answering", GPUConfig{}, with(func(d *gpu.Device) { d.Errors = []string{"temperature: ERROR_GPU_IS_LOST"} }), nil,
			[]string{"gpu0 (GPU-01234567…) not answering: temperature: ERROR_GPU_IS_LOST"}},
		{"too hot by default", GPUConfig{}, with(func(d *gpu.Device) { d.TemperatureC = 91 }), nil, []string{"temperature 91°C > 90°C"}},
		{"at the limit is fine", GPUConfig{}, with(func(d *gpu.Device) { d.TemperatureC = 90 }), nil, nil},
		{"custom temperature", GPUConfig{MaxTemperatureC: 70}, with(func(d *gpu.Device) { d.TemperatureC = 71 }), nil, []string{"71°C > 70°C"}},
		{"temperature off", GPUConfig{MaxTemperatureC: -1}, with(func(d *gpu.Device) { d.TemperatureC = 120 }), nil, nil},
		{"unsupported temperature ignored", GPUConfig{}, with(func(d *gpu.Device) { d.TemperatureC = 0; d.Unsupported = []string{"temperature"} }), nil, nil},
		{"one uncorrected ECC fails by default", GPUConfig{}, with(func(d *gpu.Device) { d.ECCUncorrected = 1 }), nil, []string{"1 uncorrected ECC errors (max 0)"}},
		{"ECC allowance", GPUConfig{MaxECCUncorrected: 2}, with(func(d *gpu.Device) { d.ECCUncorrected = 2 }), nil, nil},
		{"ECC off", GPUConfig{MaxECCUncorrected: -1}, with(func(d *gpu.Device) { d.ECCUncorrected = 1000 }), nil, nil},
		{"corrected ECC never fails", GPUConfig{}, with(func(d *gpu.Device) { d.ECCCorrected = 1e6 }), nil, nil},
		{"retired pages over default", GPUConfig{}, with(func(d *gpu.Device) { d.RetiredPages = 61 }), nil, []string{"61 retired pages (max 60)"}},
		{"retired pages at default", GPUConfig{}, with(func(d *gpu.Device) { d.RetiredPages = 60 }), nil, nil},
		{"remap pending", GPUConfig{}, with(func(d *gpu.Device) { d.RemapPending = true }), nil, []string{"row remap pending"}},
		{"remap pending ignored", GPUConfig{IgnorePendingRemap: true}, with(func(d *gpu.Device) { d.RemapPending = true }), nil, nil},
		{"remap failed always fails", GPUConfig{IgnorePendingRemap: true}, with(func(d *gpu.Device) { d.RemapFailed = true }), nil, []string{"row remapping failed"}},
		{"free memory off by default", GPUConfig{}, with(func(d *gpu.Device) { d.MemoryFreeBytes = 0 }), nil, nil},
		{"free memory too low", GPUConfig{MinFreeMemoryMiB: 2048}, with(func(d *gpu.Device) { d.MemoryFreeBytes = 1024 * gpu.MiB }), nil, []string{"1024 MiB free (min 2048 MiB)"}},
		{"critical Xid in window", GPUConfig{}, []gpu.Device{h200(0)}, []gpu.XidEvent{xid(79, time.Minute)}, []string{"gpu0 critical Xid 79 at 2026-01-02T03:03:05Z"}},
		{"critical Xid out of window", GPUConfig{}, []gpu.Device{h200(0)}, []gpu.XidEvent{xid(79, 6*time.Minute)}, nil},
		{"benign Xid", GPUConfig{}, []gpu.Device{h200(0)}, []gpu.XidEvent{xid(13, time.Minute)}, nil},
		{"custom Xid list", GPUConfig{CriticalXids: []uint64{13}}, []gpu.Device{h200(0)}, []gpu.XidEvent{xid(13, time.Minute), xid(79, time.Minute)}, []string{"Xid 13"}},
		{"repeated Xid reported once, latest", GPUConfig{}, []gpu.Device{h200(0)}, []gpu.XidEvent{xid(48, 3*time.Minute), xid(48, time.Minute)},
			[]string{"gpu0 critical Xid 48 at 2026-01-02T03:03:05Z"}},
		{"Xid ignored with negative window", GPUConfig{XidWindow: -1}, []gpu.Device{h200(0)}, []gpu.XidEvent{xid(79, 0)}, nil},
		{"several problems in order", GPUConfig{ExpectedDevices: 2}, with(func(d *gpu.Device) { d.TemperatureC = 95; d.RemapFailed = true }), nil,
			[]string{"found 1 GPUs, expected 2", "95°C", "row remapping failed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := EvaluateGPU(c.cfg, c.devs, c.xids, t0)
			if len(got) != len(c.want) {
				t.Fatalf("problems %q, want %d matching %q", got, len(c.want), c.want)
			}
			for i := range got {
				if !strings.Contains(got[i], c.want[i]) {
					t.Fatalf("problem %d = %q, want it to contain %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestEvaluateGPU_DoesNotAliasDefaults(t *testing.T) {
	g := GPUConfig{}.withDefaults()
	g.CriticalXids[0] = 1
	if DefaultCriticalXids[0] == 1 {
		t.Fatal("withDefaults shares DefaultCriticalXids")
	}
}

func TestSummarizeGPU(t *testing.T) {
	d1 := h200(1)
	d1.TemperatureC, d1.MemoryFreeBytes = 60, 90<<30
	got := SummarizeGPU([]gpu.Device{h200(0), d1})
	for _, want := range []string{"2 GPUs ok", "2× NVIDIA H200", "hottest 60°C", "least free 92160 MiB"} {
		if !strings.Contains(got, want) {
			t.Fatalf("SummarizeGPU = %q, want %q in it", got, want)
		}
	}
	if SummarizeGPU(nil) != "no GPU" {
		t.Fatal("SummarizeGPU(nil)")
	}
}

func TestTailBuffer(t *testing.T) {
	cases := []struct {
		max    int
		writes []string
		want   string
	}{
		{8, []string{"abc"}, "abc"},
		{8, []string{"abc", "defgh"}, "abcdefgh"},
		{8, []string{"abc", "defghi"}, "…bcdefghi"},
		{4, []string{"0123456789"}, "…6789"},
		{4, []string{"0123"}, "0123"},
		{4, []string{"ab", "0123"}, "…0123"},
		{5, []string{"aé", "bcdé"}, "…bcdé"}, // the cut splits é: the partial rune is dropped
	}
	for _, c := range cases {
		tb := newTailBuffer(c.max)
		for _, w := range c.writes {
			if n, err := tb.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		if got := tb.String(); got != c.want {
			t.Errorf("max %d writes %q: %q, want %q", c.max, c.writes, got, c.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("héllo", 2); got != "h…" {
		t.Fatalf("truncate = %q", got)
	}
	if got := truncate("hello", 5); got != "hello" {
		t.Fatalf("truncate = %q", got)
	}
	if !slices.Equal(Kinds, []Kind{KindHTTP, KindHTTPGenerate, KindContainer, KindGPU, KindExec}) {
		t.Fatal("Kinds changed: update docs/health.md")
	}
}
