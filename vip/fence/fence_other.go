//go:build !linux

package fence

import "time"

// Now returns 0: CLOCK_BOOTTIME is Linux only.
func Now() time.Duration { return 0 }

// A Fence is an attached kernel fence; unavailable on this operating
// system, where every function returns ErrNotSupported.
type Fence struct{}

// Install returns ErrNotSupported after validating cfg.
func Install(cfg Config) (*Fence, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

// Open returns ErrNotSupported after validating cfg.
func Open(cfg Config) (*Fence, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

// Config returns the zero Config.
func (f *Fence) Config() Config { return Config{} }

// Handle returns 0.
func (f *Fence) Handle() uint32 { return 0 }

// MapID returns 0.
func (f *Fence) MapID() uint32 { return 0 }

// SetDeadline returns ErrNotSupported.
func (f *Fence) SetDeadline(time.Duration) error { return ErrNotSupported }

// Deadline returns ErrNotSupported.
func (f *Fence) Deadline() (time.Duration, error) { return 0, ErrNotSupported }

// Verify returns ErrNotSupported.
func (f *Fence) Verify() error { return ErrNotSupported }

// Remove returns ErrNotSupported.
func (f *Fence) Remove() error { return ErrNotSupported }

// Close returns nil.
func (f *Fence) Close() error { return nil }

// List returns ErrNotSupported.
func List(string) ([]Attached, error) { return nil, ErrNotSupported }

// RemoveAll returns ErrNotSupported.
func RemoveAll(string, string) (int, error) { return 0, ErrNotSupported }
