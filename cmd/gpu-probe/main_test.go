package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/health"
	"github.com/newbieha/newbieha/health/gpu"
)

// TestRun_ThisMachine runs the real path. Without a driver (or without cgo)
// it must still exit 0 and say why; with one it must list the devices.
func TestRun_ThisMachine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--format", "json", "--timeout", "20s"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout.String())
	}
	if out.BuiltIn != gpu.BuiltIn {
		t.Fatalf("built_in %v", out.BuiltIn)
	}
	if !out.Available {
		want := "NVML unavailable"
		if !gpu.BuiltIn {
			want = "GPU support not built in"
		}
		if !strings.Contains(out.Reason, want) || out.Check.Verdict != "failing" || out.Check.Output != out.Reason {
			t.Fatalf("without NVML: %+v", out)
		}
		t.Logf("no NVML here: %s", out.Reason)
		return
	}
	if len(out.Devices) == 0 || out.Devices[0].UUID == "" {
		t.Fatalf("with NVML: %+v", out)
	}
	t.Logf("%s", stdout.String())
}

func TestRun_BadFlags(t *testing.T) {
	for _, args := range [][]string{{"--format", "xml"}, {"--nope"}, {"extra"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Fatalf("%q: exit %d", args, code)
		}
	}
}

// fakeGPU is a health.GPUProbe with fixed answers.
type fakeGPU struct {
	devs []gpu.Device
	xids []gpu.XidEvent
	xerr error
}

func (f fakeGPU) Devices(context.Context) ([]gpu.Device, error) { return f.devs, nil }
func (f fakeGPU) XidEvents(time.Time) ([]gpu.XidEvent, error)   { return f.xids, f.xerr }

func TestProbeAndTable(t *testing.T) {
	d := gpu.Device{Index: 0, Name: "NVIDIA H200", UUID: "GPU-1234", DriverVersion: "550.54.15",
		MemoryTotalBytes: 144384 * gpu.MiB, MemoryUsedBytes: 40960 * gpu.MiB, MemoryFreeBytes: 103424 * gpu.MiB,
		UtilizationGPU: 87, TemperatureC: 45, PowerW: 412.345, ECCCorrected: 5, RemappedRowsCorrectable: 2,
		Unsupported: []string{"retired_pages"}}
	out := probe(fakeGPU{devs: []gpu.Device{d}, xerr: gpu.ErrXidUnsupported}, health.GPUConfig{ExpectedDevices: 1}, 0, time.Second)
	if !out.Available || out.Check.Verdict != "passing" || out.XidStatus != "not supported" || out.Thresholds.MaxTemperatureC != 90 {
		t.Fatalf("healthy: %+v", out)
	}
	var table bytes.Buffer
	writeTable(&table, out)
	for _, want := range []string{
		"GPU  NAME         UUID      MEM USED/TOTAL MiB  UTIL  TEMP  POWER    ECC CORR/UNCORR  RETIRED  REMAPPED CORR/UNCORR  REMAP  DRIVER",
		"0    NVIDIA H200  GPU-1234  40960/144384        87%   45°C  412.3 W  5/0              n/a      2/0                   ok     550.54.15",
		"gpu0: not supported: retired_pages",
		"Xid events: not supported, 0 seen",
		"gpu check: passing: 1 GPUs ok (1× NVIDIA H200); hottest 45°C; least free 103424 MiB",
	} {
		if !strings.Contains(table.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, table.String())
		}
	}

	hot := d
	hot.TemperatureC = 95
	out = probe(fakeGPU{devs: []gpu.Device{hot}, xids: []gpu.XidEvent{{Time: time.Now(), Index: 0, Xid: 79}}}, health.GPUConfig{}, 0, time.Second)
	if out.Check.Verdict != "failing" || !strings.Contains(out.Check.Output, "temperature 95°C > 90°C") ||
		!strings.Contains(out.Check.Output, "critical Xid 79") || out.XidStatus != "watching" {
		t.Fatalf("failing: %+v", out)
	}
}
