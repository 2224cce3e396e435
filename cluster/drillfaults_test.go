package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// serviceCall is one call of Config.ServiceFault.
type serviceCall struct {
	fault  string
	status int
	until  time.Time
}

// drillHooks records the service faults and crashes an agent is asked for.
type drillHooks struct {
	mu      sync.Mutex
	calls   []serviceCall
	fail    error
	crashed chan struct{}
}

func (h *drillHooks) service(_ context.Context, fault string, status int, until time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail != nil {
		return h.fail
	}
	h.calls = append(h.calls, serviceCall{fault, status, until})
	return nil
}

func (h *drillHooks) last() (serviceCall, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) == 0 {
		return serviceCall{}, 0
	}
	return h.calls[len(h.calls)-1], len(h.calls)
}

// Root on node1's socket takes node2's service out of service and puts it
// back: the request is carried to node2, which gets the fault, its status
// and its bound; each is audited there. Bad requests name the field, and
// a node without a service or crash hook says so.
func TestDrillService_CarriedToTheTargetAndBounded(t *testing.T) {
	c := newTestCluster(t)
	hooks := &drillHooks{crashed: make(chan struct{})}
	c.configure = func(name string, cfg *Config) {
		if name == "node2" {
			cfg.ServiceFault = hooks.service
			cfg.Crash = func() { close(hooks.crashed) }
		}
	}
	n1 := c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	local := NewLocalClient(n1.dataDir)

	for _, tc := range []struct {
		req        DrillServiceRequest
		want       serviceCall
		wantBounds bool
	}{
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultStop, For: Duration(30 * time.Second)}, serviceCall{fault: "stop"}, true},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultStop, Clear: true}, serviceCall{fault: "stop"}, false},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultPause, For: Duration(5 * time.Second)}, serviceCall{fault: "pause"}, true},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultErrors, For: Duration(5 * time.Second)}, serviceCall{fault: "errors", status: 500}, true},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultErrors, Status: 503, For: Duration(5 * time.Second)}, serviceCall{fault: "errors", status: 503}, true},
	} {
		asked := time.Now()
		if err := local.DrillService(ctx, tc.req); err != nil {
			t.Fatalf("%+v: %v", tc.req, err)
		}
		got, _ := hooks.last()
		if got.fault != tc.want.fault || got.status != tc.want.status {
			t.Fatalf("%+v: node2 got %+v, want %+v", tc.req, got, tc.want)
		}
		if !tc.wantBounds && !got.until.IsZero() {
			t.Fatalf("%+v: an undo carried until %v", tc.req, got.until)
		}
		if tc.wantBounds {
			if d := got.until.Sub(asked); d < time.Duration(tc.req.For) || d > time.Duration(tc.req.For)+5*time.Second {
				t.Fatalf("%+v: until is %v after the request, want its for", tc.req, d)
			}
		}
	}
	_, before := hooks.last()
	for _, tc := range []struct {
		req  DrillServiceRequest
		want string
	}{
		{DrillServiceRequest{Fault: ServiceFaultStop, For: Duration(time.Minute)}, "node: required"},
		{DrillServiceRequest{Node: "node2", Fault: "explode", For: Duration(time.Minute)}, `fault: "explode"`},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultStop}, "for: 0s"},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultStop, For: Duration(2 * time.Hour)}, "for: 2h0m0s"},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultErrors, Status: 200, For: Duration(time.Minute)}, "status: 200"},
		{DrillServiceRequest{Node: "node2", Fault: ServiceFaultPause, Status: 500, For: Duration(time.Minute)}, "status: only for fault errors"},
		{DrillServiceRequest{Node: "nobody", Fault: ServiceFaultStop, For: Duration(time.Minute)}, "nobody"},
		{DrillServiceRequest{Node: "node1", Fault: ServiceFaultStop, For: Duration(time.Minute)}, "node1 runs no service"},
	} {
		err := local.DrillService(ctx, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.req, err, tc.want)
		}
	}
	hooks.mu.Lock()
	hooks.fail = errors.New("no running service container of this node")
	hooks.mu.Unlock()
	if err := local.DrillService(ctx, DrillServiceRequest{Node: "node2", Fault: ServiceFaultStop, For: Duration(time.Minute)}); err == nil || !strings.Contains(err.Error(), "no running service container") {
		t.Errorf("a failing hook: %v", err)
	}
	if _, n := hooks.last(); n != before {
		t.Fatalf("refused requests reached the hook: %d calls, want %d", n, before)
	}

	// Crash: refused without a node and on a node without the hook;
	// node2 records it, answers, then crashes.
	if err := local.DrillCrash(ctx, DrillCrashRequest{}); err == nil || !strings.Contains(err.Error(), "node: required") {
		t.Errorf("crash without a node: %v", err)
	}
	if err := local.DrillCrash(ctx, DrillCrashRequest{Node: "node1"}); err == nil || !strings.Contains(err.Error(), "node1 cannot crash itself") {
		t.Errorf("crash on node1, no hook: %v", err)
	}
	if err := local.DrillCrash(ctx, DrillCrashRequest{Node: "node2"}); err != nil {
		t.Fatalf("crash node2: %v", err)
	}
	select {
	case <-hooks.crashed:
	case <-time.After(5 * time.Second):
		t.Fatal("node2 did not crash")
	}
	waitFor(t, 10*time.Second, "the drill faults audited", func() error {
		ev, err := local.Events(ctx)
		if err != nil {
			return err
		}
		var all []string
		for _, e := range ev {
			all = append(all, e.Detail)
		}
		text := strings.Join(all, "\n")
		for _, want := range []string{
			"root@node1: drill service on node2: stop for 30s",
			"root@node1: drill service on node2: stop undone",
			"root@node1: drill service on node2: errors (status 503) for 5s",
			"root@node1: drill crash of node2's agent",
		} {
			if !strings.Contains(text, want) {
				return errors.New("no " + want + " in:\n" + text)
			}
		}
		return nil
	})
}
