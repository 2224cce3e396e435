package vip

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Defaults of MonitorConfig.
const (
	// DefaultMonitorInterval is the pause between two conflict probes. One
	// broadcast ARP request per node every 2 s is negligible load, and the
	// RFC 5227 timers are of the same order (ANNOUNCE_INTERVAL 2 s).
	DefaultMonitorInterval = 2 * time.Second
	// DefaultMonitorTimeout is how long one probe collects answers. A host on
	// the same segment answers within a millisecond; 500 ms leaves room for a
	// loaded host without slowing detection much.
	DefaultMonitorTimeout = 500 * time.Millisecond
)

// MonitorConfig configures a ConflictMonitor.
type MonitorConfig struct {
	// Interval is the pause between the end of one probe and the start of
	// the next. 0 means DefaultMonitorInterval.
	Interval time.Duration
	// Timeout is how long each probe collects answers. 0 means
	// DefaultMonitorTimeout.
	Timeout time.Duration
	// ExpectedMAC, if set, returns the link-layer address the current holder
	// should answer with (nil when unknown). It is consulted on a host that
	// does not hold the VIP: any other answering address is then a conflict.
	ExpectedMAC func() net.HardwareAddr
	// Report receives the outcome of every probe, conflict or not, on the
	// monitor's goroutine; it must return quickly. Required.
	Report func(ProbeReport)
}

// withDefaults fills zero fields.
func (c MonitorConfig) withDefaults() MonitorConfig {
	if c.Interval == 0 {
		c.Interval = DefaultMonitorInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultMonitorTimeout
	}
	return c
}

// Validate reports the first problem with c, naming the field.
func (c MonitorConfig) Validate() error {
	switch {
	case c.Interval < 0 || (c.Interval > 0 && c.Interval < minRefresh):
		return fmt.Errorf("%w: Interval %v: must be at least %v (0 for the default %v)", ErrInvalidConfig, c.Interval, minRefresh, DefaultMonitorInterval)
	case c.Timeout < 0 || (c.Timeout > 0 && c.Timeout < minGARPInterval):
		return fmt.Errorf("%w: Timeout %v: must be at least %v (0 for the default %v)", ErrInvalidConfig, c.Timeout, minGARPInterval, DefaultMonitorTimeout)
	case c.Report == nil:
		return fmt.Errorf("%w: Report: must be set", ErrInvalidConfig)
	}
	return nil
}

// prober is what a ConflictMonitor needs from a Manager; tests fake it.
type prober interface {
	Held() (bool, time.Duration, error)
	Probe(ctx context.Context, timeout time.Duration) ([]net.HardwareAddr, error)
}

// ConflictMonitor checks, by ARP probe, that at most one host answers for the
// VIP. It runs on the holder and, where they share its layer-2 segment, on
// the other nodes too, so a second holder is seen from inside and outside.
//
// The rules, per probe (Probe lists every address other than this host's
// own that claimed the VIP while the probe listened):
//   - this host holds the VIP: any answer is a conflict (another host claims
//     an address this host holds);
//   - this host does not hold it: two or more distinct answers are a
//     conflict, and so is one answer that differs from ExpectedMAC when that
//     is known. No answer is not a conflict (nobody holds the VIP).
//
// A monitor only reports; what to do about a conflict (log, metrics, history,
// re-announce from the rightful holder) is the caller's decision, because
// only the caller knows whether this host may announce. During a legitimate
// handover the old and new holder can both appear in one probe window, so
// callers that alert should require two consecutive conflicting reports.
type ConflictMonitor struct {
	p   prober
	cfg MonitorConfig
}

// NewConflictMonitor returns a monitor that probes for m's VIP on m's
// interface. It starts nothing; call Run.
func NewConflictMonitor(m *Manager, cfg MonitorConfig) (*ConflictMonitor, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: manager: must not be nil", ErrInvalidConfig)
	}
	return newConflictMonitor(m, cfg)
}

func newConflictMonitor(p prober, cfg MonitorConfig) (*ConflictMonitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &ConflictMonitor{p: p, cfg: cfg.withDefaults()}, nil
}

// Run probes at once and then every Interval, handing each report to
// Report, until ctx is done; it then returns nil. The caller owns the
// goroutine Run runs on, so cancelling ctx and waiting for Run to return
// stops the monitor completely.
func (c *ConflictMonitor) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r := c.Check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.cfg.Report(r)
		t.Reset(c.cfg.Interval)
	}
}

// Check runs one probe and returns its report without calling Report.
func (c *ConflictMonitor) Check(ctx context.Context) ProbeReport {
	r := ProbeReport{At: time.Now()}
	held, _, err := c.p.Held()
	if err != nil {
		r.Err = fmt.Errorf("check whether the vip is held: %w", err)
		return r
	}
	r.Holding = held
	macs, err := c.p.Probe(ctx, c.cfg.Timeout)
	if err != nil {
		r.Err = fmt.Errorf("probe vip: %w", err)
		return r
	}
	r.MACs = macs
	var expected net.HardwareAddr
	if c.cfg.ExpectedMAC != nil {
		expected = c.cfg.ExpectedMAC()
	}
	r.Conflict, r.Reason = judge(held, macs, expected)
	return r
}

// judge applies the ConflictMonitor rules to one probe's answers.
func judge(holding bool, macs []net.HardwareAddr, expected net.HardwareAddr) (bool, string) {
	switch {
	case holding && len(macs) > 0:
		return true, fmt.Sprintf("held here and also claimed by %s", joinMACs(macs))
	case !holding && len(macs) > 1:
		return true, fmt.Sprintf("claimed by %d hosts: %s", len(macs), joinMACs(macs))
	case !holding && len(macs) == 1 && len(expected) > 0 && !bytes.Equal(macs[0], expected):
		return true, fmt.Sprintf("claimed by %s, expected holder %s", macs[0], expected)
	}
	return false, ""
}

func joinMACs(macs []net.HardwareAddr) string {
	s := make([]string, len(macs))
	for i, m := range macs {
		s[i] = m.String()
	}
	return strings.Join(s, ", ")
}
