package gpu

import (
	"errors"
	"time"
)

// ErrNotBuiltIn is returned by every read of a binary built without cgo (or
// for an OS other than Linux): such a binary has no NVML code at all.
var ErrNotBuiltIn = errors.New("GPU support not built in")

// ErrUnavailable is wrapped by every error that means NVML could not be
// used at all: the library is missing (no driver installed), Init failed
// (driver not loaded, no permission) or the device count could not be read.
// The wrapping error's text carries NVML's own reason.
var ErrUnavailable = errors.New("NVML unavailable")

// ErrBusy is returned when the previous read is still blocked inside NVML
// (a hung driver or a GPU that stopped answering). The reader runs at most
// one NVML read at a time and never stacks goroutines on a hung call.
var ErrBusy = errors.New("previous NVML read still running")

// ErrXidUnsupported is returned by XidEvents when no device supports the
// Xid critical-error event, or Xid watching was disabled.
var ErrXidUnsupported = errors.New("Xid events not supported")

// ErrClosed is returned by reads after Close.
var ErrClosed = errors.New("GPU reader closed")

// Device is one GPU's telemetry at one instant. Counters that the device
// does not support (ECC on a consumer card, remapped rows before Ampere,
// retired pages on newer parts) read as zero and are named in Unsupported;
// any other failure to read a value is recorded in Errors, and a device with
// Errors counts as not answering.
type Device struct {
	// Index is NVML's device index (0-based, the order nvidia-smi shows).
	Index int `json:"index"`
	// Name is the product name, for example "NVIDIA H200".
	Name string `json:"name"`
	// UUID is the device's stable identifier, for example "GPU-5d9e...".
	UUID string `json:"uuid"`
	// DriverVersion is the kernel driver's version, for example "550.54.15";
	// the same on every device of a host.
	DriverVersion string `json:"driver_version"`
	// MemoryTotalBytes, MemoryUsedBytes and MemoryFreeBytes are the frame
	// buffer as NVML's nvmlDeviceGetMemoryInfo reports it.
	MemoryTotalBytes uint64 `json:"memory_total_bytes"`
	MemoryUsedBytes  uint64 `json:"memory_used_bytes"`
	MemoryFreeBytes  uint64 `json:"memory_free_bytes"`
	// UtilizationGPU and UtilizationMemory are percentages (0-100) over
	// NVML's last sample period.
	UtilizationGPU    uint32 `json:"utilization_gpu_pct"`
	UtilizationMemory uint32 `json:"utilization_memory_pct"`
	// TemperatureC is the GPU die temperature in degrees Celsius.
	TemperatureC uint32 `json:"temperature_c"`
	// PowerW is the board's power draw in watts (NVML reports milliwatts).
	PowerW float64 `json:"power_w"`
	// ECCCorrected and ECCUncorrected are the volatile (since the driver
	// loaded) total ECC error counts.
	ECCCorrected   uint64 `json:"ecc_corrected"`
	ECCUncorrected uint64 `json:"ecc_uncorrected"`
	// RetiredPages is the number of retired frame-buffer pages, both causes
	// (multiple single-bit and double-bit errors) added.
	RetiredPages int `json:"retired_pages"`
	// RemappedRowsCorrectable and RemappedRowsUncorrectable count rows
	// remapped because of correctable and uncorrectable errors (Ampere and
	// newer).
	RemappedRowsCorrectable   int `json:"remapped_rows_correctable"`
	RemappedRowsUncorrectable int `json:"remapped_rows_uncorrectable"`
	// RemapPending is true when a row remap waits for a GPU reset.
	RemapPending bool `json:"remap_pending"`
	// RemapFailed is true when a row remap failed; the GPU needs service.
	RemapFailed bool `json:"remap_failed"`
	// Unsupported names the values the device does not support ("ecc",
	// "remapped_rows", "retired_pages", "power", ...).
	Unsupported []string `json:"unsupported,omitempty"`
	// Errors lists the values that failed to read, each as "field: reason".
	Errors []string `json:"errors,omitempty"`
}

// Answering reports whether every supported value of the device was read.
func (d Device) Answering() bool { return len(d.Errors) == 0 }

// MiB is one mebibyte, the unit thresholds and tables use for memory.
const MiB = 1 << 20

// XidEvent is one Xid error the driver reported through NVML's event API.
// See NVIDIA's "Xid Errors" document for the meaning of each number.
type XidEvent struct {
	// Time is when the reader received the event.
	Time time.Time `json:"time"`
	// Index and UUID name the device; Index is -1 when NVML did not say.
	Index int    `json:"index"`
	UUID  string `json:"uuid,omitempty"`
	// Xid is the Xid number (EventData of nvmlEventData_t).
	Xid uint64 `json:"xid"`
}

// Options configure a Reader. The zero value is usable.
type Options struct {
	// LibraryPath is the NVML shared library to load; empty means
	// libnvidia-ml.so.1 from the loader's search path.
	LibraryPath string
	// RetryInit is how long a failed NVML Init is remembered before the next
	// read tries again (a driver may be installed or loaded later).
	// Zero means DefaultRetryInit.
	RetryInit time.Duration
	// DisableXid turns the Xid event watcher off.
	DisableXid bool
	// XidHistory is how many Xid events are kept; zero means
	// DefaultXidHistory.
	XidHistory int
	// Now is the clock used to stamp Xid events; nil means time.Now.
	Now func() time.Time
}

// DefaultRetryInit is how long a failed NVML Init is remembered.
const DefaultRetryInit = 30 * time.Second

// DefaultXidHistory is how many Xid events a Reader keeps.
const DefaultXidHistory = 128

// xidWaitMillis is how long one nvmlEventSetWait blocks. It bounds how long
// Close waits for the watcher goroutine to notice it should stop.
const xidWaitMillis = 500

func (o Options) withDefaults() Options {
	if o.RetryInit <= 0 {
		o.RetryInit = DefaultRetryInit
	}
	if o.XidHistory <= 0 {
		o.XidHistory = DefaultXidHistory
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// xidRing is a bounded history of Xid events, oldest first.
type xidRing struct {
	max    int
	events []XidEvent
}

func (r *xidRing) add(e XidEvent) {
	if len(r.events) == r.max {
		copy(r.events, r.events[1:])
		r.events = r.events[:r.max-1]
	}
	r.events = append(r.events, e)
}

// since returns a copy of the events strictly after t.
func (r *xidRing) since(t time.Time) []XidEvent {
	var out []XidEvent
	for _, e := range r.events {
		if e.Time.After(t) {
			out = append(out, e)
		}
	}
	return out
}
