//go:build cgo && linux

package health

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/newbieha/newbieha/health/gpu"
)

// newMockH200 returns a two-GPU DGX H200 from go-nvml's mocks with the
// methods the Reader uses set, GPU 1's temperature in temp1 and an event
// channel for Xid events.
func newMockH200(temp1 *atomic.Uint32, events chan nvml.EventData) *server.Server {
	srv := dgxh200.NewWithGPUs(gpus.Multiple(2, gpus.H200_SXM5_141GB)...)
	srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				select {
				case e := <-events:
					return e, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	for i, d := range srv.Devices {
		dev := d.(*server.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 50}, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
			if i == 1 {
				return temp1.Load(), nvml.SUCCESS
			}
			return 40, nvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 300000, nvml.SUCCESS }
		dev.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) { return 0, nvml.SUCCESS }
		dev.GetRetiredPagesFunc = func(nvml.PageRetirementCause) ([]uint64, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
		dev.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 0, false, false, nvml.SUCCESS }
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) { return nvml.EventTypeXidCriticalError, nvml.SUCCESS }
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	return srv
}

// TestGPUCheck_OnMockNVML runs the whole GPU path, NVML mock → gpu.Reader →
// gpu check → Runner verdict, on a fake clock.
func TestGPUCheck_OnMockNVML(t *testing.T) {
	var temp1 atomic.Uint32
	temp1.Store(45)
	events := make(chan nvml.EventData, 1)
	srv := newMockH200(&temp1, events)
	clock := newFakeClock(t0)
	reader := gpu.NewWithNVML(srv, gpu.Options{Now: clock.Now})
	t.Cleanup(func() { reader.Close() })

	cc := CheckConfig{Name: "gpu", Kind: KindGPU, Required: true, Interval: time.Second, Timeout: 500 * time.Millisecond,
		Rise: 1, Fall: 1, GPU: &GPUConfig{ExpectedDevices: 2}}
	h := startHarness(t, []CheckConfig{cc}, nil, Deps{GPU: reader, Clock: clock})

	rep := h.r.Report()
	if !rep.Healthy || len(rep.GPU) != 2 || rep.GPU[0].Name != "NVIDIA H200 141GB HBM3e" || rep.GPU[1].TemperatureC != 45 ||
		!strings.HasPrefix(rep.Checks[0].Output, "2 GPUs ok (2× NVIDIA H200 141GB HBM3e); hottest 45°C") {
		t.Fatalf("healthy: %+v", rep)
	}

	temp1.Store(95)
	h.tick(1)
	rep = h.r.Report()
	if rep.Healthy || rep.Reason != "gpu:gpu" || !strings.Contains(rep.Checks[0].Output, "temperature 95°C > 90°C") ||
		!strings.HasPrefix(rep.Checks[0].Output, "gpu1 (GPU-") {
		t.Fatalf("hot GPU: %+v", rep.Checks[0])
	}
	temp1.Store(45)
	h.tick(1)
	if rep := h.r.Report(); !rep.Healthy {
		t.Fatalf("cooled down: %+v", rep.Checks[0])
	}

	// GPU 0 falls off the bus: Xid 79 fails the check for the Xid window.
	events <- nvml.EventData{Device: srv.Devices[0], EventType: nvml.EventTypeXidCriticalError, EventData: 79}
	waitFor(t, "the reader to see the Xid", 5*time.Second, func() bool {
		evs, _ := reader.XidEvents(time.Time{})
		return len(evs) == 1
	})
	h.tick(1)
	rep = h.r.Report()
	if rep.Healthy || !strings.Contains(rep.Checks[0].Output, "gpu0 critical Xid 79 at ") {
		t.Fatalf("after Xid 79: %+v", rep.Checks[0])
	}
}
