//go:build !linux

package vip

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Manager adds, renews, announces and removes one virtual IP on one
// interface. On this operating system every method returns ErrNotSupported;
// see the Linux build for the real implementation.
type Manager struct{}

// New returns ErrNotSupported after validating cfg.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

// Lifetime returns 0.
func (m *Manager) Lifetime() time.Duration { return 0 }

// Assignment returns the zero Assignment.
func (m *Manager) Assignment() Assignment { return Assignment{} }

// Held returns ErrNotSupported.
func (m *Manager) Held() (bool, time.Duration, error) { return false, 0, ErrNotSupported }

// Prepare returns ErrNotSupported.
func (m *Manager) Prepare() error { return ErrNotSupported }

// Hold returns ErrNotSupported.
func (m *Manager) Hold(context.Context, time.Duration) (bool, error) { return false, ErrNotSupported }

// Announce returns ErrNotSupported.
func (m *Manager) Announce(context.Context) error { return ErrNotSupported }

// Release returns ErrNotSupported.
func (m *Manager) Release() error { return ErrNotSupported }

// Close returns nil.
func (m *Manager) Close() error { return nil }

// Probe returns ErrNotSupported.
func (m *Manager) Probe(context.Context, time.Duration) ([]net.HardwareAddr, error) {
	return nil, ErrNotSupported
}

// ReleaseAddr returns ErrNotSupported after validating a.
func ReleaseAddr(a Assignment) error {
	if err := a.Validate(); err != nil {
		return err
	}
	return ErrNotSupported
}

// Cleanup returns ErrNotSupported after validating a.
func Cleanup(a Assignment, pinDir string) error {
	if err := a.Validate(); err != nil {
		return err
	}
	return ErrNotSupported
}

// CleanupCount returns ErrNotSupported after validating a.
func CleanupCount(a Assignment, _ string) (int, error) {
	if err := a.Validate(); err != nil {
		return 0, err
	}
	return 0, ErrNotSupported
}

// Now returns 0: CLOCK_BOOTTIME is Linux only.
func Now() time.Duration { return 0 }

// Probe returns ErrNotSupported.
func Probe(context.Context, string, netip.Addr, time.Duration) ([]net.HardwareAddr, error) {
	return nil, ErrNotSupported
}

// Watcher reports packets that claim an address; unavailable here.
type Watcher struct{}

// Watch returns ErrNotSupported.
func Watch(string, netip.Addr) (*Watcher, error) { return nil, ErrNotSupported }

// Next returns ErrNotSupported.
func (w *Watcher) Next(context.Context) (Sighting, error) { return Sighting{}, ErrNotSupported }

// Close returns nil.
func (w *Watcher) Close() error { return nil }
