//go:build cgo && linux

package gpu

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeNVML is a DGX H200 from go-nvml's mocks with every method the Reader
// uses set. Values a test changes while the Reader runs sit behind mu.
type fakeNVML struct {
	srv  *server.Server
	devs []*server.Device

	mu       sync.Mutex
	temp     map[int]uint32
	tempRet  map[int]nvml.Return
	xidOK    map[int]bool // devices that support Xid events (all by default)
	register int          // RegisterEvents calls

	events    chan nvml.EventData
	waiting   atomic.Int32 // Wait calls in progress
	freed     atomic.Int32
	shutdowns atomic.Int32
	inits     atomic.Int32
}

func newFakeNVML(n int) *fakeNVML {
	srv := dgxh200.NewWithGPUs(gpus.Multiple(n, gpus.H200_SXM5_141GB)...)
	f := &fakeNVML{srv: srv, temp: map[int]uint32{}, tempRet: map[int]nvml.Return{}, xidOK: map[int]bool{}, events: make(chan nvml.EventData, 8)}
	srv.InitFunc = func() nvml.Return { f.inits.Add(1); return nvml.SUCCESS }
	srv.ShutdownFunc = func() nvml.Return { f.shutdowns.Add(1); return nvml.SUCCESS }
	srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				f.waiting.Add(1)
				defer f.waiting.Add(-1)
				select {
				case e := <-f.events:
					return e, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { f.freed.Add(1); return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	for i, d := range srv.Devices {
		dev := d.(*server.Device)
		f.devs = append(f.devs, dev)
		f.temp[i] = 40 + uint32(i)
		f.xidOK[i] = true
		dev.MemoryInfo = nvml.Memory{Total: dev.MemoryInfo.Total, Used: 40 << 30, Free: dev.MemoryInfo.Total - 40<<30}
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 87, Memory: 30}, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
			if s != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if ret, ok := f.tempRet[i]; ok {
				return 0, ret
			}
			return f.temp[i], nvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 412345, nvml.SUCCESS }
		dev.GetTotalEccErrorsFunc = func(t nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
			switch {
			case c != nvml.VOLATILE_ECC:
				return 999, nvml.SUCCESS // the Reader must ask for volatile counts
			case t == nvml.MEMORY_ERROR_TYPE_CORRECTED:
				return 5, nvml.SUCCESS
			}
			return 0, nvml.SUCCESS
		}
		// Hopper replaced page retirement with row remapping.
		dev.GetRetiredPagesFunc = func(nvml.PageRetirementCause) ([]uint64, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
		dev.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 2, 0, false, false, nvml.SUCCESS }
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if !f.xidOK[i] {
				return nvml.EventTypeSingleBitEccError, nvml.SUCCESS
			}
			return nvml.EventTypeXidCriticalError | nvml.EventTypeDoubleBitEccError, nvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(types uint64, set nvml.EventSet) nvml.Return {
			f.mu.Lock()
			defer f.mu.Unlock()
			if types != nvml.EventTypeXidCriticalError {
				return nvml.ERROR_INVALID_ARGUMENT
			}
			f.register++
			return nvml.SUCCESS
		}
	}
	return f
}

func (f *fakeNVML) setTemp(i int, c uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.temp[i] = c
}

func (f *fakeNVML) setTempRet(i int, ret nvml.Return) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tempRet[i] = ret
}

// fixedClock is a settable clock for Options.Now.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestReader(t *testing.T, lib nvml.Interface, opts Options) *Reader {
	t.Helper()
	r := NewWithNVML(lib, opts)
	t.Cleanup(func() { r.Close() })
	return r
}

func TestReader_DGXH200Telemetry(t *testing.T) {
	f := newFakeNVML(8)
	r := newTestReader(t, f.srv, Options{})
	devs, err := r.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 {
		t.Fatalf("%d devices", len(devs))
	}
	for i, d := range devs {
		want := Device{
			Index: i, Name: "NVIDIA H200 141GB HBM3e", UUID: f.devs[i].UUID, DriverVersion: "550.54.15",
			MemoryTotalBytes: 144384 << 20, MemoryUsedBytes: 40 << 30, MemoryFreeBytes: 144384<<20 - 40<<30,
			UtilizationGPU: 87, UtilizationMemory: 30, TemperatureC: 40 + uint32(i), PowerW: 412.345,
			ECCCorrected: 5, ECCUncorrected: 0, RemappedRowsCorrectable: 2,
		}
		if d.Index != want.Index || d.Name != want.Name || d.UUID != want.UUID || !strings.HasPrefix(d.UUID, "GPU-") ||
			d.DriverVersion != want.DriverVersion || d.MemoryTotalBytes != want.MemoryTotalBytes ||
			d.MemoryUsedBytes != want.MemoryUsedBytes || d.MemoryFreeBytes != want.MemoryFreeBytes ||
			d.UtilizationGPU != want.UtilizationGPU || d.UtilizationMemory != want.UtilizationMemory ||
			d.TemperatureC != want.TemperatureC || d.PowerW != want.PowerW || d.ECCCorrected != want.ECCCorrected ||
			d.ECCUncorrected != want.ECCUncorrected || d.RetiredPages != 0 || d.RemappedRowsCorrectable != 2 ||
			d.RemappedRowsUncorrectable != 0 || d.RemapPending || d.RemapFailed {
			t.Fatalf("device %d:\n got %+v\nwant %+v", i, d, want)
		}
		if len(d.Unsupported) != 1 || d.Unsupported[0] != "retired_pages" || !d.Answering() {
			t.Fatalf("device %d: unsupported %v errors %v", i, d.Unsupported, d.Errors)
		}
	}
	if f.inits.Load() != 1 {
		t.Fatalf("Init called %d times", f.inits.Load())
	}
	// A second read does not initialise again.
	if _, err := r.Devices(context.Background()); err != nil || f.inits.Load() != 1 {
		t.Fatalf("second read: %v, %d inits", err, f.inits.Load())
	}
}

func TestReader_DeviceFailuresAreRecordedNotFatal(t *testing.T) {
	f := newFakeNVML(3)
	f.setTempRet(1, nvml.ERROR_GPU_IS_LOST)
	f.devs[2].GetPowerUsageFunc = nil // an unset mock method panics
	f.devs[0].GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
		return 0, nvml.ERROR_NOT_SUPPORTED // ECC disabled
	}
	r := newTestReader(t, f.srv, Options{})
	devs, err := r.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := devs[0]; !d.Answering() || strings.Join(d.Unsupported, ",") != "ecc_corrected,ecc_uncorrected,retired_pages" {
		t.Fatalf("device 0: %+v", d)
	}
	if d := devs[1]; d.Answering() || len(d.Errors) != 1 || d.Errors[0] != "temperature: ERROR_GPU_IS_LOST" || d.Name == "" {
		t.Fatalf("device 1: %+v", d)
	}
	if d := devs[2]; d.Answering() || len(d.Errors) != 1 || !strings.HasPrefix(d.Errors[0], "power: panic in NVML call") {
		t.Fatalf("device 2: %+v", d)
	}

	// A handle that cannot be had is one error, not a crash.
	f.srv.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 1 {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return f.srv.Devices[i], nvml.SUCCESS
	}
	devs, err = r.Devices(context.Background())
	if err != nil || len(devs) != 3 || devs[1].Answering() || devs[1].Errors[0] != "handle: ERROR_GPU_IS_LOST" || devs[1].Index != 1 {
		t.Fatalf("lost handle: %v %+v", err, devs)
	}
}

func TestReader_InitFailureIsAClearStateAndRetried(t *testing.T) {
	f := newFakeNVML(1)
	var initRet atomic.Int32
	initRet.Store(int32(nvml.ERROR_LIBRARY_NOT_FOUND))
	f.srv.InitFunc = func() nvml.Return { f.inits.Add(1); return nvml.Return(initRet.Load()) }
	clock := &fixedClock{now: t0}
	r := newTestReader(t, f.srv, Options{Now: clock.Now, RetryInit: time.Minute})

	_, err := r.Devices(context.Background())
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, nvml.ERROR_LIBRARY_NOT_FOUND) ||
		err.Error() != "NVML unavailable: init: ERROR_LIBRARY_NOT_FOUND (libnvidia-ml.so.1 not found: is the NVIDIA driver installed?)" {
		t.Fatalf("Devices: %v", err)
	}
	if _, xerr := r.XidEvents(time.Time{}); !errors.Is(xerr, ErrUnavailable) {
		t.Fatalf("XidEvents before init: %v", xerr)
	}
	// Within RetryInit the failure is remembered.
	clock.Add(30 * time.Second)
	if _, err2 := r.Devices(context.Background()); err2.Error() != err.Error() || f.inits.Load() != 1 {
		t.Fatalf("within RetryInit: %v, %d inits", err2, f.inits.Load())
	}
	// The driver got loaded meanwhile: after RetryInit the Reader recovers.
	initRet.Store(int32(nvml.SUCCESS))
	clock.Add(31 * time.Second)
	devs, err := r.Devices(context.Background())
	if err != nil || len(devs) != 1 || f.inits.Load() != 2 {
		t.Fatalf("after RetryInit: %v, %d devices, %d inits", err, len(devs), f.inits.Load())
	}

	// Other Init failures carry their own hints; a panicking Init is an error.
	for _, c := range []struct {
		init func() nvml.Return
		want string
	}{
		{func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }, "init: ERROR_DRIVER_NOT_LOADED (the NVIDIA kernel module is not loaded)"},
		{func() nvml.Return { return nvml.ERROR_NO_PERMISSION }, "init: ERROR_NO_PERMISSION (no permission to open /dev/nvidia*)"},
		{func() nvml.Return { panic("boom") }, "init: panic in NVML call: boom"},
	} {
		f := newFakeNVML(1)
		f.srv.InitFunc = c.init
		_, err := newTestReader(t, f.srv, Options{}).Devices(context.Background())
		if !errors.Is(err, ErrUnavailable) || !strings.HasSuffix(err.Error(), c.want) {
			t.Fatalf("Devices: %v, want %q", err, c.want)
		}
	}
}

func TestReader_DeviceCountFailure(t *testing.T) {
	f := newFakeNVML(1)
	f.srv.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	_, err := newTestReader(t, f.srv, Options{DisableXid: true}).Devices(context.Background())
	if !errors.Is(err, ErrUnavailable) || err.Error() != "NVML unavailable: device count: ERROR_UNKNOWN" {
		t.Fatalf("Devices: %v", err)
	}
}

func TestReader_HungDriver(t *testing.T) {
	f := newFakeNVML(1)
	release := make(chan struct{})
	var blocked atomic.Bool
	f.srv.DeviceGetCountFunc = func() (int, nvml.Return) {
		if blocked.Load() {
			<-release
		}
		return 1, nvml.SUCCESS
	}
	r := newTestReader(t, f.srv, Options{DisableXid: true})
	if _, err := r.Devices(context.Background()); err != nil {
		t.Fatal(err)
	}
	blocked.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Devices(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung read: %v", err)
	}
	// The blocked call is still in the driver: no second one is stacked.
	if _, err := r.Devices(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("read while hung: %v", err)
	}
	blocked.Store(false)
	close(release)
	waitFor(t, "the reader to recover", func() bool {
		_, err := r.Devices(context.Background())
		return err == nil
	})
}

func TestReader_XidEvents(t *testing.T) {
	f := newFakeNVML(4)
	f.mu.Lock()
	f.xidOK[1] = false
	f.mu.Unlock()
	clock := &fixedClock{now: t0}
	r := newTestReader(t, f.srv, Options{Now: clock.Now, XidHistory: 2})
	if _, err := r.Devices(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	registered := f.register
	f.mu.Unlock()
	if registered != 3 {
		t.Fatalf("registered %d devices, want the 3 that support Xid events", registered)
	}
	if evs, err := r.XidEvents(time.Time{}); err != nil || len(evs) != 0 {
		t.Fatalf("no events yet: %v %v", evs, err)
	}

	f.events <- nvml.EventData{Device: f.devs[3], EventType: nvml.EventTypeXidCriticalError, EventData: 79}
	waitFor(t, "the Xid event", func() bool { evs, _ := r.XidEvents(time.Time{}); return len(evs) == 1 })
	evs, _ := r.XidEvents(time.Time{})
	if e := evs[0]; e.Index != 3 || e.UUID != f.devs[3].UUID || e.Xid != 79 || !e.Time.Equal(t0) {
		t.Fatalf("event: %+v", e)
	}
	// Events of other types are not Xids; an event without a device has
	// index -1; history is bounded.
	clock.Add(time.Minute)
	f.events <- nvml.EventData{Device: f.devs[0], EventType: nvml.EventTypeDoubleBitEccError, EventData: 1}
	f.events <- nvml.EventData{EventType: nvml.EventTypeXidCriticalError, EventData: 48}
	f.events <- nvml.EventData{Device: f.devs[2], EventType: nvml.EventTypeXidCriticalError, EventData: 13}
	waitFor(t, "three more events", func() bool { return len(f.events) == 0 })
	waitFor(t, "the history to roll", func() bool {
		evs, _ := r.XidEvents(time.Time{})
		return len(evs) == 2 && evs[1].Xid == 13
	})
	evs, _ = r.XidEvents(time.Time{})
	if evs[0].Xid != 48 || evs[0].Index != -1 || evs[0].UUID != "" || evs[1].Index != 2 {
		t.Fatalf("history: %+v", evs)
	}
	if evs, _ := r.XidEvents(t0.Add(time.Minute)); len(evs) != 0 {
		t.Fatalf("since filter: %+v", evs)
	}
}

func TestReader_XidUnsupportedOrDisabled(t *testing.T) {
	f := newFakeNVML(2)
	f.mu.Lock()
	f.xidOK[0], f.xidOK[1] = false, false
	f.mu.Unlock()
	r := newTestReader(t, f.srv, Options{})
	if _, err := r.Devices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.XidEvents(time.Time{}); !errors.Is(err, ErrXidUnsupported) {
		t.Fatalf("no device supports Xid: %v", err)
	}
	if f.freed.Load() != 1 {
		t.Fatal("the unused event set was not freed")
	}

	f = newFakeNVML(1)
	f.srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
	r = newTestReader(t, f.srv, Options{})
	if _, err := r.Devices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.XidEvents(time.Time{}); err == nil || err.Error() != "create NVML event set: ERROR_NOT_SUPPORTED" {
		t.Fatalf("event set failure: %v", err)
	}

	f = newFakeNVML(1)
	created := false
	f.srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { created = true; return nil, nvml.ERROR_UNKNOWN }
	r = newTestReader(t, f.srv, Options{DisableXid: true})
	if _, err := r.Devices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.XidEvents(time.Time{}); !errors.Is(err, ErrXidUnsupported) || created {
		t.Fatalf("disabled: %v, event set created %v", err, created)
	}
}

func TestReader_CloseStopsTheWatcherAndShutsDown(t *testing.T) {
	before := runtime.NumGoroutine()
	f := newFakeNVML(2)
	r := NewWithNVML(f.srv, Options{})
	if _, err := r.Devices(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watcher to wait", func() bool { return f.waiting.Load() == 1 })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if f.waiting.Load() != 0 || f.freed.Load() != 1 || f.shutdowns.Load() != 1 {
		t.Fatalf("after Close: %d waiting, %d freed, %d shutdowns", f.waiting.Load(), f.freed.Load(), f.shutdowns.Load())
	}
	if err := r.Close(); err != nil || f.shutdowns.Load() != 1 {
		t.Fatalf("second Close: %v, %d shutdowns", err, f.shutdowns.Load())
	}
	if _, err := r.Devices(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Devices after Close: %v", err)
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })

	// A Reader that never initialised does not shut NVML down.
	f = newFakeNVML(1)
	if err := NewWithNVML(f.srv, Options{}).Close(); err != nil || f.shutdowns.Load() != 0 {
		t.Fatalf("Close unused: %v, %d shutdowns", err, f.shutdowns.Load())
	}
}

// TestReader_RealLibrary runs the real NVML path on this machine. Without a
// driver (the CI machines) Init must fail cleanly with the reason; with one,
// the devices must read.
func TestReader_RealLibrary(t *testing.T) {
	r := New(Options{})
	defer func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	devs, err := r.Devices(ctx)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Devices without a usable NVML: %v (want ErrUnavailable)", err)
		}
		t.Logf("no usable NVML here, as expected on a machine without a driver: %v", err)
		if _, xerr := r.XidEvents(time.Time{}); !errors.Is(xerr, ErrUnavailable) {
			t.Fatalf("XidEvents: %v", xerr)
		}
		return
	}
	t.Logf("NVML answered: %d devices", len(devs))
	for _, d := range devs {
		if d.UUID == "" || d.Name == "" || d.MemoryTotalBytes == 0 {
			t.Errorf("device %d incomplete: %+v", d.Index, d)
		}
		t.Logf("%+v", d)
	}
}
