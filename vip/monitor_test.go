package vip

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name     string
		holding  bool
		macs     []net.HardwareAddr
		expected net.HardwareAddr
		conflict bool
		reason   string
	}{
		{"holder alone", true, nil, nil, false, ""},
		{"holder and another", true, []net.HardwareAddr{macB}, nil, true, "02:00:00:00:00:0b"},
		{"nobody holds", false, nil, macA, false, ""},
		{"one holder, expected unknown", false, []net.HardwareAddr{macA}, nil, false, ""},
		{"one holder, the expected one", false, []net.HardwareAddr{macA}, macA, false, ""},
		{"one holder, not the expected one", false, []net.HardwareAddr{macB}, macA, true, "expected holder 02:00:00:00:00:0a"},
		{"two holders", false, []net.HardwareAddr{macA, macB}, nil, true, "claimed by 2 hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, reason := judge(tt.holding, tt.macs, tt.expected)
			if c != tt.conflict {
				t.Fatalf("conflict = %v, want %v (reason %q)", c, tt.conflict, reason)
			}
			if !strings.Contains(reason, tt.reason) || (!c && reason != "") {
				t.Fatalf("reason = %q, want it to contain %q", reason, tt.reason)
			}
		})
	}
}

// fakeProber returns canned answers and counts probes.
type fakeProber struct {
	mu      sync.Mutex
	held    bool
	macs    []net.HardwareAddr
	err     error
	probes  int
	timeout time.Duration
}

func (f *fakeProber) Held() (bool, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held, time.Second, nil
}

func (f *fakeProber) Probe(_ context.Context, timeout time.Duration) ([]net.HardwareAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	f.timeout = timeout
	return f.macs, f.err
}

func TestConflictMonitor_RunReportsUntilCancelled(t *testing.T) {
	p := &fakeProber{held: true, macs: []net.HardwareAddr{macB}}
	reports := make(chan ProbeReport, 100)
	mon, err := newConflictMonitor(p, MonitorConfig{
		Interval: minRefresh, Timeout: 20 * time.Millisecond,
		Report: func(r ProbeReport) { reports <- r },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }()
	for i := 0; i < 2; i++ {
		select {
		case r := <-reports:
			if !r.Conflict || !r.Holding || len(r.MACs) != 1 || r.Err != nil {
				t.Fatalf("report %d = %+v, want a conflict with one other MAC", i, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no report within 5s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timeout != 20*time.Millisecond {
		t.Errorf("probe timeout = %v, want the configured 20ms", p.timeout)
	}
}

func TestConflictMonitor_CheckErrorAndExpected(t *testing.T) {
	p := &fakeProber{err: errors.New("socket broke")}
	mon, err := newConflictMonitor(p, MonitorConfig{Report: func(ProbeReport) {}, ExpectedMAC: func() net.HardwareAddr { return macA }})
	if err != nil {
		t.Fatal(err)
	}
	r := mon.Check(context.Background())
	if r.Err == nil || r.Conflict || !strings.Contains(r.Err.Error(), "socket broke") {
		t.Fatalf("report = %+v, want the probe error and no conflict", r)
	}
	p.mu.Lock()
	p.err, p.macs = nil, []net.HardwareAddr{macB}
	p.mu.Unlock()
	r = mon.Check(context.Background())
	if !r.Conflict || r.Holding {
		t.Fatalf("report = %+v, want a conflict (answer differs from the expected holder)", r)
	}
}

func TestNewConflictMonitor_Rejects(t *testing.T) {
	if _, err := NewConflictMonitor(nil, MonitorConfig{Report: func(ProbeReport) {}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil manager: err = %v", err)
	}
	if _, err := newConflictMonitor(&fakeProber{}, MonitorConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no Report: err = %v", err)
	}
}
