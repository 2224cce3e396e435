//go:build cgo && linux

package gpu

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// BuiltIn reports whether this binary carries the NVML code (built with cgo
// for Linux).
const BuiltIn = true

// closeWait bounds how long Close waits for a read or the Xid watcher that is
// blocked inside the driver.
const closeWait = 5 * time.Second

// Reader reads GPU telemetry through NVML. NVML is initialised lazily on the
// first read and again after RetryInit when Init failed, so an agent started
// before the driver was loaded recovers on its own. A Reader is safe for
// concurrent use; it runs at most one NVML read at a time.
type Reader struct {
	opts Options
	lib  nvml.Interface

	mu       sync.Mutex
	closed   bool
	inited   bool
	initErr  error     // the last Init failure, wrapping ErrUnavailable
	initAt   time.Time // when initErr was recorded
	driver   string
	busy     bool          // a read is in flight
	readDone chan struct{} // closed when the in-flight read returns

	xidMu   sync.Mutex
	xid     xidRing
	xidErr  error         // why Xid events are not (or no longer) watched
	xidStop chan struct{} // closed by Close
	xidDone chan struct{} // closed when the watcher returns; nil if none started
}

// New returns a Reader for the system's NVML library. It does not touch
// NVML yet: the first Devices call does.
func New(opts Options) *Reader {
	var libOpts []nvml.LibraryOption
	if opts.LibraryPath != "" {
		libOpts = append(libOpts, nvml.WithLibraryPath(opts.LibraryPath))
	}
	return NewWithNVML(nvml.New(libOpts...), opts)
}

// NewWithNVML returns a Reader on the given NVML interface: tests and drills
// pass go-nvml's mocks (pkg/nvml/mock, mock/dgxh200) to fake a GPU's state.
// Options.LibraryPath is ignored. Only cgo builds for Linux have it.
func NewWithNVML(lib nvml.Interface, opts Options) *Reader {
	opts = opts.withDefaults()
	return &Reader{
		opts:    opts,
		lib:     lib,
		xid:     xidRing{max: opts.XidHistory},
		xidStop: make(chan struct{}),
	}
}

// Devices returns the telemetry of every device NVML reports, in index order.
// An error wrapping ErrUnavailable means NVML itself could not be used (its
// text says why); per-device failures are recorded in Device.Errors instead.
// If ctx ends while NVML is blocked, Devices returns ctx's error and the
// blocked call keeps the Reader busy (ErrBusy) until the driver answers.
func (r *Reader) Devices(ctx context.Context) ([]Device, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if r.busy {
		r.mu.Unlock()
		return nil, ErrBusy
	}
	r.busy = true
	done := make(chan struct{})
	r.readDone = done
	r.mu.Unlock()

	type result struct {
		devs []Device
		err  error
	}
	ch := make(chan result, 1)
	// The goroutine ends when NVML returns; Close waits for it (bounded).
	// It clears busy before handing over the result, so the caller's next
	// read never finds the Reader busy.
	go func() {
		var res result
		defer func() {
			r.mu.Lock()
			r.busy = false
			r.mu.Unlock()
			close(done)
			ch <- res
		}()
		res.devs, res.err = r.read()
	}()
	select {
	case res := <-ch:
		return res.devs, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read GPU telemetry: %w", ctx.Err())
	}
}

// XidEvents returns the Xid events received after since, oldest first. The
// error is non-nil when events are not being watched (ErrXidUnsupported, a
// failed event set, NVML not initialised); events already received are
// returned with it.
func (r *Reader) XidEvents(since time.Time) ([]XidEvent, error) {
	r.mu.Lock()
	inited, initErr := r.inited, r.initErr
	r.mu.Unlock()
	if !inited {
		if initErr == nil {
			initErr = fmt.Errorf("%w: not initialised yet", ErrUnavailable)
		}
		return nil, initErr
	}
	r.xidMu.Lock()
	defer r.xidMu.Unlock()
	return r.xid.since(since), r.xidErr
}

// Close stops the Xid watcher and shuts NVML down. It waits at most a few
// seconds for a call blocked in the driver, and skips the NVML shutdown
// (returning an error) if one is still blocked. Close is idempotent.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	busy, done := r.busy, r.readDone
	r.mu.Unlock()

	// A watcher started by a read still in flight sees xidStop closed at once.
	close(r.xidStop)
	timeout := time.NewTimer(closeWait)
	defer timeout.Stop()
	if busy {
		select {
		case <-done:
		case <-timeout.C:
			return errors.New("close NVML: a read is still blocked in the driver; NVML left initialised")
		}
	}
	r.xidMu.Lock()
	xidDone := r.xidDone
	r.xidMu.Unlock()
	if xidDone != nil {
		select {
		case <-xidDone:
		case <-timeout.C:
			return errors.New("close NVML: the Xid watcher is still blocked in the driver; NVML left initialised")
		}
	}
	r.mu.Lock()
	inited := r.inited
	r.mu.Unlock()
	if !inited {
		return nil
	}
	if ret, perr := guard(r.lib.Shutdown); perr != nil {
		return fmt.Errorf("nvml shutdown: %w", perr)
	} else if ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %w", ret)
	}
	return nil
}

// read does one full telemetry read. Only one runs at a time (r.busy).
func (r *Reader) read() ([]Device, error) {
	driver, err := r.ensureInit()
	if err != nil {
		return nil, err
	}
	var count int
	ret, perr := guard(func() (ret nvml.Return) { count, ret = r.lib.DeviceGetCount(); return })
	if perr != nil {
		return nil, fmt.Errorf("%w: device count: %w", ErrUnavailable, perr)
	}
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: device count: %w", ErrUnavailable, ret)
	}
	devs := make([]Device, 0, count)
	for i := 0; i < count; i++ {
		devs = append(devs, r.readDevice(i, driver))
	}
	return devs, nil
}

// ensureInit initialises NVML once, remembering a failure for RetryInit.
func (r *Reader) ensureInit() (string, error) {
	r.mu.Lock()
	if r.inited {
		d := r.driver
		r.mu.Unlock()
		return d, nil
	}
	now := r.opts.Now()
	if r.initErr != nil && now.Sub(r.initAt) < r.opts.RetryInit {
		err := r.initErr
		r.mu.Unlock()
		return "", err
	}
	r.mu.Unlock()

	err := r.init()

	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.initErr, r.initAt = err, now
		return "", err
	}
	r.inited, r.initErr = true, nil
	return r.driver, nil
}

// init calls nvmlInit, reads the driver version and starts the Xid watcher.
func (r *Reader) init() error {
	ret, perr := guard(r.lib.Init)
	if perr != nil {
		return fmt.Errorf("%w: init: %w", ErrUnavailable, perr)
	}
	if ret != nvml.SUCCESS {
		return fmt.Errorf("%w: init: %w%s", ErrUnavailable, ret, initHint(ret))
	}
	var driver string
	ret, perr = guard(func() (ret nvml.Return) { driver, ret = r.lib.SystemGetDriverVersion(); return })
	switch {
	case perr != nil:
		driver = "unknown (" + perr.Error() + ")"
	case ret != nvml.SUCCESS:
		driver = "unknown (" + ret.Error() + ")"
	}
	r.mu.Lock()
	r.driver = driver
	r.mu.Unlock()
	if r.opts.DisableXid {
		r.setXidErr(ErrXidUnsupported)
	} else {
		r.startXidWatch()
	}
	return nil
}

// initHint adds an operator's explanation to the Init failures seen in the
// field.
func initHint(ret nvml.Return) string {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return " (libnvidia-ml.so.1 not found: is the NVIDIA driver installed?)"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return " (the NVIDIA kernel module is not loaded)"
	case nvml.ERROR_NO_PERMISSION:
		return " (no permission to open /dev/nvidia*)"
	}
	return ""
}

// readDevice reads one device; it never fails as a whole, recording what it
// could not read in Device.Errors.
func (r *Reader) readDevice(i int, driver string) Device {
	d := Device{Index: i, DriverVersion: driver}
	f := fields{d: &d}
	var dev nvml.Device
	if !f.read("handle", func() (ret nvml.Return) { dev, ret = r.lib.DeviceGetHandleByIndex(i); return }) {
		return d
	}
	f.read("name", func() (ret nvml.Return) { d.Name, ret = dev.GetName(); return })
	f.read("uuid", func() (ret nvml.Return) { d.UUID, ret = dev.GetUUID(); return })
	f.read("memory", func() (ret nvml.Return) {
		var m nvml.Memory
		m, ret = dev.GetMemoryInfo()
		d.MemoryTotalBytes, d.MemoryUsedBytes, d.MemoryFreeBytes = m.Total, m.Used, m.Free
		return ret
	})
	f.read("utilization", func() (ret nvml.Return) {
		var u nvml.Utilization
		u, ret = dev.GetUtilizationRates()
		d.UtilizationGPU, d.UtilizationMemory = u.Gpu, u.Memory
		return ret
	})
	// nvmlDeviceGetTemperature is deprecated in the NVML 13 headers in favour
	// of GetTemperatureV, but every driver in the field still exports it and
	// older ones lack the V form.
	f.read("temperature", func() (ret nvml.Return) { d.TemperatureC, ret = dev.GetTemperature(nvml.TEMPERATURE_GPU); return })
	f.read("power", func() (ret nvml.Return) {
		var mw uint32
		mw, ret = dev.GetPowerUsage()
		d.PowerW = float64(mw) / 1000
		return ret
	})
	f.read("ecc_corrected", func() (ret nvml.Return) {
		d.ECCCorrected, ret = dev.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC)
		return ret
	})
	f.read("ecc_uncorrected", func() (ret nvml.Return) {
		d.ECCUncorrected, ret = dev.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC)
		return ret
	})
	f.read("retired_pages", func() (ret nvml.Return) {
		d.RetiredPages = 0
		for _, cause := range []nvml.PageRetirementCause{
			nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
			nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
		} {
			var pages []uint64
			if pages, ret = dev.GetRetiredPages(cause); ret != nvml.SUCCESS {
				return ret
			}
			d.RetiredPages += len(pages)
		}
		return ret
	})
	f.read("remapped_rows", func() (ret nvml.Return) {
		d.RemappedRowsCorrectable, d.RemappedRowsUncorrectable, d.RemapPending, d.RemapFailed, ret = dev.GetRemappedRows()
		return ret
	})
	return d
}

// fields records the outcome of each value read of one device.
type fields struct{ d *Device }

// read runs one NVML getter and records an unsupported value or a failure.
// It reports whether the value was read.
func (f fields) read(name string, call func() nvml.Return) bool {
	ret, perr := guard(call)
	switch {
	case perr != nil:
		f.d.Errors = append(f.d.Errors, name+": "+perr.Error())
		return false
	case ret == nvml.SUCCESS:
		return true
	case ret == nvml.ERROR_NOT_SUPPORTED:
		f.d.Unsupported = append(f.d.Unsupported, name)
		return false
	default:
		f.d.Errors = append(f.d.Errors, name+": "+ret.Error())
		return false
	}
}

// guard runs one NVML call, turning a panic (a broken library, or an unset
// mock method) into an error: the last line of defence, never the first.
func guard(call func() nvml.Return) (ret nvml.Return, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in NVML call: %v", p)
		}
	}()
	return call(), nil
}

func (r *Reader) setXidErr(err error) {
	r.xidMu.Lock()
	r.xidErr = err
	r.xidMu.Unlock()
}

// startXidWatch creates an event set, registers every device that supports
// the Xid critical-error event, and starts the watcher goroutine.
func (r *Reader) startXidWatch() {
	var set nvml.EventSet
	ret, perr := guard(func() (ret nvml.Return) { set, ret = r.lib.EventSetCreate(); return })
	if perr != nil || ret != nvml.SUCCESS {
		r.setXidErr(fmt.Errorf("create NVML event set: %w", errors.Join(perr, retErr(ret))))
		return
	}
	var count int
	if _, perr := guard(func() (ret nvml.Return) { count, ret = r.lib.DeviceGetCount(); return }); perr != nil {
		count = 0
	}
	registered := 0
	for i := 0; i < count; i++ {
		var dev nvml.Device
		var supported uint64
		ok := true
		for _, call := range []func() nvml.Return{
			func() (ret nvml.Return) { dev, ret = r.lib.DeviceGetHandleByIndex(i); return },
			func() (ret nvml.Return) { supported, ret = dev.GetSupportedEventTypes(); return },
		} {
			if ret, perr := guard(call); perr != nil || ret != nvml.SUCCESS {
				ok = false
				break
			}
		}
		if !ok || supported&nvml.EventTypeXidCriticalError == 0 {
			continue
		}
		if ret, perr := guard(func() nvml.Return { return dev.RegisterEvents(nvml.EventTypeXidCriticalError, set) }); perr == nil && ret == nvml.SUCCESS {
			registered++
		}
	}
	if registered == 0 {
		guard(set.Free)
		r.setXidErr(ErrXidUnsupported)
		return
	}
	done := make(chan struct{})
	r.xidMu.Lock()
	r.xidDone = done
	r.xidErr = nil
	r.xidMu.Unlock()
	go r.watchXid(set, done)
}

// watchXid waits for events until Close. Each wait blocks at most
// xidWaitMillis, so Close is noticed within that time.
func (r *Reader) watchXid(set nvml.EventSet, done chan struct{}) {
	defer close(done)
	defer guard(set.Free)
	for {
		select {
		case <-r.xidStop:
			return
		default:
		}
		var data nvml.EventData
		ret, perr := guard(func() (ret nvml.Return) { data, ret = set.Wait(xidWaitMillis); return })
		switch {
		case perr != nil:
			r.setXidErr(fmt.Errorf("wait for NVML events: %w", perr))
			return
		case ret == nvml.SUCCESS:
			if data.EventType&nvml.EventTypeXidCriticalError != 0 {
				r.recordXid(data)
			}
			continue
		case ret == nvml.ERROR_TIMEOUT:
			continue
		}
		// Another failure (a GPU lost, for one): note it, back off, retry.
		r.setXidErr(fmt.Errorf("wait for NVML events: %w", ret))
		select {
		case <-r.xidStop:
			return
		case <-time.After(time.Second):
		}
	}
}

func (r *Reader) recordXid(data nvml.EventData) {
	e := XidEvent{Time: r.opts.Now(), Index: -1, Xid: data.EventData}
	if data.Device != nil {
		var uuid string
		var index int
		if ret, perr := guard(func() (ret nvml.Return) { uuid, ret = data.Device.GetUUID(); return }); perr == nil && ret == nvml.SUCCESS {
			e.UUID = uuid
		}
		if ret, perr := guard(func() (ret nvml.Return) { index, ret = data.Device.GetIndex(); return }); perr == nil && ret == nvml.SUCCESS {
			e.Index = index
		}
	}
	r.xidMu.Lock()
	r.xid.add(e)
	r.xidErr = nil
	r.xidMu.Unlock()
}

// retErr is ret as an error, or nil for SUCCESS.
func retErr(ret nvml.Return) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return ret
}
