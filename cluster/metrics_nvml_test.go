//go:build cgo && linux

package cluster

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/newbieha/newbieha/health/gpu"
)

var errNoXidYet = errors.New("no Xid event yet")

// TestMetrics_GPUFromMockNVML runs the whole telemetry path that a GPU
// node runs, on go-nvml's DGX H200 mock: NVML → gpu.Reader → the health
// GPU check → HealthReporter.Detail → DCGM-named series, an Xid event
// included.
func TestMetrics_GPUFromMockNVML(t *testing.T) {
	srv := dgxh200.NewWithGPUs(gpus.Multiple(2, gpus.H200_SXM5_141GB)...)
	events := make(chan nvml.EventData, 1)
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
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(60 + i), Memory: 20}, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return uint32(40 + i), nvml.SUCCESS }
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 300500, nvml.SUCCESS }
		dev.GetTotalEccErrorsFunc = func(t nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
			if t == nvml.MEMORY_ERROR_TYPE_UNCORRECTED {
				return 2, nvml.SUCCESS
			}
			return 7, nvml.SUCCESS
		}
		dev.GetRetiredPagesFunc = func(nvml.PageRetirementCause) ([]uint64, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
		dev.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 1, 0, true, false, nvml.SUCCESS }
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) { return nvml.EventTypeXidCriticalError, nvml.SUCCESS }
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	reader := gpu.NewWithNVML(srv, gpu.Options{})
	t.Cleanup(func() { reader.Close() })
	if _, err := reader.Devices(t.Context()); err != nil { // starts the Xid watch
		t.Fatal(err)
	}
	events <- nvml.EventData{Device: srv.Devices[0], EventType: nvml.EventTypeXidCriticalError, EventData: 79}
	waitFor(t, 5*time.Second, "the reader to see the Xid", func() error {
		if evs, _ := reader.XidEvents(time.Time{}); len(evs) != 1 {
			return errNoXidYet
		}
		return nil
	})

	s := scrapeOneNode(t, reader)
	devs, err := reader.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	where := "mock DGX H200"
	s.want(t, where, 1, "newbieha_gpu_read_ok")
	for _, d := range devs {
		g := []string{"gpu", strconv.Itoa(d.Index), "UUID", d.UUID, "modelName", d.Name}
		s.want(t, where, float64(60+d.Index), "DCGM_FI_DEV_GPU_UTIL", g...)
		s.want(t, where, 20, "DCGM_FI_DEV_MEM_COPY_UTIL", g...)
		s.want(t, where, float64(d.MemoryUsedBytes/(1<<20)), "DCGM_FI_DEV_FB_USED", g...)
		s.want(t, where, float64(d.MemoryFreeBytes/(1<<20)), "DCGM_FI_DEV_FB_FREE", g...)
		s.want(t, where, float64(d.MemoryTotalBytes/(1<<20)), "DCGM_FI_DEV_FB_TOTAL", g...)
		s.want(t, where, float64(40+d.Index), "DCGM_FI_DEV_GPU_TEMP", g...)
		s.want(t, where, 300.5, "DCGM_FI_DEV_POWER_USAGE", g...)
		s.want(t, where, 7, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", g...)
		s.want(t, where, 2, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", g...)
		s.want(t, where, 1, "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", g...)
		s.want(t, where, 1, "DCGM_FI_DEV_ROW_REMAP_PENDING", g...)
		s.want(t, where, 1, "newbieha_gpu_answering", g...)
		if _, ok := s.value("newbieha_gpu_retired_pages", g...); ok {
			t.Errorf("retired pages exported though the device does not support them")
		}
	}
	if devs[0].MemoryTotalBytes == 0 {
		t.Fatalf("the mock reports no memory: %+v", devs[0])
	}
	s.want(t, where, 79, "DCGM_FI_DEV_XID_ERRORS", "gpu", "0", "UUID", devs[0].UUID)
	s.want(t, where, 0, "DCGM_FI_DEV_XID_ERRORS", "gpu", "1")
	s.want(t, where, 1, "newbieha_health_check_state", "check", "gpu:gpu", "state", "failing")
}
