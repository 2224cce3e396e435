//go:build !(cgo && linux)

package gpu

import (
	"context"
	"time"
)

// BuiltIn reports whether this binary carries the NVML code (built with cgo
// for Linux). This build does not: every read returns ErrNotBuiltIn.
const BuiltIn = false

// Reader is the stand-in of a build without cgo: every read returns
// ErrNotBuiltIn. It has the same methods as the NVML-backed Reader.
type Reader struct{}

// New returns a Reader whose reads all return ErrNotBuiltIn.
func New(Options) *Reader { return &Reader{} }

// Devices returns ErrNotBuiltIn.
func (*Reader) Devices(context.Context) ([]Device, error) { return nil, ErrNotBuiltIn }

// XidEvents returns ErrNotBuiltIn.
func (*Reader) XidEvents(time.Time) ([]XidEvent, error) { return nil, ErrNotBuiltIn }

// Close does nothing.
func (*Reader) Close() error { return nil }
