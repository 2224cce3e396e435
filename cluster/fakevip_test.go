package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeWire is a shared L2 segment for fake VIPs: it knows which node holds
// the address until when, and fails the test if two hold it at once.
type fakeWire struct {
	t         *testing.T
	mu        sync.Mutex
	expiry    map[string]time.Time // node -> lease end; absent = not held
	claims    []fakeClaim
	crashed   map[string]bool    // Release does nothing: the lease runs out by itself
	foreign   []net.HardwareAddr // hosts outside the cluster that answer for the VIP
	announces map[string]int
	// gate, when set, holds the next Renew of gateNode until closed;
	// gated is closed when that Renew has started waiting.
	gate, gated chan struct{}
	gateNode    string
}

type fakeClaim struct {
	node     string
	at       time.Time
	handover bool
}

func newFakeWire(t *testing.T) *fakeWire {
	return &fakeWire{t: t, expiry: map[string]time.Time{}, crashed: map[string]bool{}, announces: map[string]int{}}
}

// factory returns a VIPFactory for node.
func (w *fakeWire) factory(node string) VIPFactory {
	return func(spec VIPSpec) (VIP, error) {
		if !spec.Prefix.IsValid() || spec.Lifetime < time.Second {
			return nil, fmt.Errorf("bad spec %+v", spec)
		}
		return &fakeVIP{w: w, node: node, life: spec.Lifetime}, nil
	}
}

// holders lists nodes whose lease has not run out.
func (w *fakeWire) holders() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	now := time.Now()
	for n, e := range w.expiry {
		if now.Before(e) {
			out = append(out, n)
		}
	}
	return out
}

func (w *fakeWire) lastClaim() fakeClaim {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.claims) == 0 {
		return fakeClaim{}
	}
	return w.claims[len(w.claims)-1]
}

type fakeVIP struct {
	w    *fakeWire
	node string
	life time.Duration
}

var errStale = errors.New("stale confirmation")

func (v *fakeVIP) put(notAfter time.Time, claim bool) error {
	w := v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if now.After(notAfter) {
		return errStale
	}
	for n, e := range w.expiry {
		if n != v.node && now.Before(e) {
			w.t.Errorf("TWO HOLDERS: %s writes the VIP while %s holds it until %v", v.node, n, e.Sub(now))
		}
	}
	if claim {
		w.claims = append(w.claims, fakeClaim{node: v.node, at: now})
	}
	w.expiry[v.node] = now.Add(v.life)
	return nil
}

func (v *fakeVIP) Claim(_ context.Context, notAfter time.Time) error { return v.put(notAfter, true) }
func (v *fakeVIP) Renew(_ context.Context, notAfter time.Time) error {
	v.w.mu.Lock()
	gate, gated := v.w.gate, v.w.gated
	if gate != nil && v.w.gateNode == v.node {
		v.w.gate = nil
	} else {
		gate = nil
	}
	v.w.mu.Unlock()
	if gate != nil {
		close(gated)
		<-gate
		// A renewal that was confirmed just before the gate: give it the
		// same confirmation, as a paused goroutine would.
		notAfter = time.Now().Add(time.Second)
	}
	return v.put(notAfter, false)
}
func (v *fakeVIP) Announce(context.Context) error {
	v.w.mu.Lock()
	v.w.announces[v.node]++
	v.w.mu.Unlock()
	return nil
}

// probeFor is a ProbeVIP for a node without a VIP actuator.
func (w *fakeWire) probeFor(node string) func(context.Context, string, netip.Addr, time.Duration) ([]net.HardwareAddr, error) {
	return func(ctx context.Context, _ string, _ netip.Addr, d time.Duration) ([]net.HardwareAddr, error) {
		return (&fakeVIP{w: w, node: node}).Probe(ctx, d)
	}
}

// Probe answers like ARP: every other holder and every foreign host.
func (v *fakeVIP) Probe(context.Context, time.Duration) ([]net.HardwareAddr, error) {
	v.w.mu.Lock()
	defer v.w.mu.Unlock()
	out := append([]net.HardwareAddr(nil), v.w.foreign...)
	for n, e := range v.w.expiry {
		if n != v.node && time.Now().Before(e) {
			out = append(out, net.HardwareAddr{2, 0, 0, 0, 0, byte(len(n))})
		}
	}
	return out, nil
}
func (v *fakeVIP) Close() error { return nil }

// crash makes node's agent unable to release: as if it died.
func (w *fakeWire) crash(node string) {
	w.mu.Lock()
	w.crashed[node] = true
	w.mu.Unlock()
}

func (v *fakeVIP) Release() error {
	v.w.mu.Lock()
	if !v.w.crashed[v.node] {
		delete(v.w.expiry, v.node)
	}
	v.w.mu.Unlock()
	return nil
}
func (v *fakeVIP) Held() (bool, time.Duration, error) {
	v.w.mu.Lock()
	defer v.w.mu.Unlock()
	e, ok := v.w.expiry[v.node]
	if !ok || !time.Now().Before(e) {
		return false, 0, nil
	}
	return true, time.Until(e), nil
}

// fakeHealth is a switchable HealthReporter.
type fakeHealth struct {
	mu  sync.Mutex
	bad string
}

func (h *fakeHealth) set(bad string) { h.mu.Lock(); h.bad = bad; h.mu.Unlock() }
func (h *fakeHealth) Detail() any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return map[string]string{"fake": h.bad}
}

func (h *fakeHealth) Healthy() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad == "", h.bad
}
