// Package gpu reads NVIDIA GPU telemetry through NVML (github.com/NVIDIA/go-nvml)
// and watches for Xid events.
//
// The package is split by build tags so that a binary built without cgo (the
// witness, a static CGO_ENABLED=0 build) still compiles:
//
//   - telemetry.go (no tags): the Device and XidEvent types, the Options and
//     the sentinel errors. No cgo, no NVML.
//   - nvml_adapter.go (cgo && linux): the NVML-backed reader. It is the only
//     file of newbieha that imports go-nvml.
//   - nvml_stub.go (!(cgo && linux)): the same API, answering every read
//     with ErrNotBuiltIn ("GPU support not built in").
//
// An NVML that is missing or failing (no driver installed, driver not loaded,
// a device that fell off the bus) is never a crash: reads return an error
// wrapping ErrUnavailable whose text carries NVML's reason, and every NVML
// call is guarded by recover as a last line of defence. The policy that turns
// telemetry into a healthy or failing verdict lives in package health, not
// here.
package gpu
