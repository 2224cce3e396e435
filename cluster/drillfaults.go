package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// The service faults a DrillServiceRequest injects.
const (
	// ServiceFaultStop stops the service container and holds the runtime
	// reconciler off, so that it stays stopped.
	ServiceFaultStop = "stop"
	// ServiceFaultPause freezes the service container (it accepts
	// connections and never answers), the reconciler held off likewise.
	ServiceFaultPause = "pause"
	// ServiceFaultErrors switches the service to answering errors through
	// its fault switch (POST /fault of the stub model server).
	ServiceFaultErrors = "errors"
)

// MaxServiceFault is the longest a drilled service fault may last.
const MaxServiceFault = time.Hour

// DrillServiceRequest takes Node's service out of service for For, the
// way Fault says; with Clear it puts it back at once (For and Status are
// then ignored). Every fault also ends by itself at its bound: the
// reconciler's hold runs out and it starts or unpauses the container, the
// stub's fault switch takes the bound too.
type DrillServiceRequest struct {
	Node  string `json:"node"`  // required: the GPU node whose service it is
	Fault string `json:"fault"` // ServiceFaultStop, ServiceFaultPause or ServiceFaultErrors
	// Status is the HTTP status the service answers with, for
	// ServiceFaultErrors (400-599; 0 means 500).
	Status int      `json:"status,omitempty"`
	For    Duration `json:"for"`
	Clear  bool     `json:"clear,omitempty"`
}

func (r *DrillServiceRequest) validate() error {
	if r.Node == "" {
		return fmt.Errorf("node: required (the GPU node whose service it is)")
	}
	switch r.Fault {
	case ServiceFaultStop, ServiceFaultPause:
		if r.Status != 0 {
			return fmt.Errorf("status: only for fault %s", ServiceFaultErrors)
		}
	case ServiceFaultErrors:
		if r.Status == 0 {
			r.Status = http.StatusInternalServerError
		}
		if r.Status < 400 || r.Status > 599 {
			return fmt.Errorf("status: %d is not an error status (400-599)", r.Status)
		}
	default:
		return fmt.Errorf("fault: %q is not %s, %s or %s", r.Fault, ServiceFaultStop, ServiceFaultPause, ServiceFaultErrors)
	}
	if !r.Clear && (r.For < Duration(time.Second) || time.Duration(r.For) > MaxServiceFault) {
		return fmt.Errorf("for: %v must be between 1s and %v", time.Duration(r.For), MaxServiceFault)
	}
	return nil
}

// DrillCrashRequest makes Node's agent exit at once without any cleanup,
// as a crash does (drill agent-crash): it does not hand the active role
// over, release its lease or remove the VIP; its fence closes by itself.
// Whatever supervises the agent (its systemd unit) starts it again.
type DrillCrashRequest struct {
	Node string `json:"node"` // required: the member whose agent crashes
}

// handleDrillService carries out a DrillServiceRequest on its node
// (forwarded there like drill inject).
func (o *operatorAPI) handleDrillService(w http.ResponseWriter, r *http.Request) {
	a := o.a
	var req DrillServiceRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := req.validate(); err != nil {
		writeError(w, fmt.Errorf("%w: drill service: %w", ErrBadRequest, err))
		return
	}
	if o.toNode(w, r, req.Node, req) {
		return
	}
	if a.cfg.ServiceFault == nil {
		writeError(w, fmt.Errorf("%w: node: %s runs no service", ErrBadRequest, a.Name()))
		return
	}
	var until time.Time
	what := fmt.Sprintf("drill service on %s: %s undone", a.Name(), req.Fault)
	if !req.Clear {
		until = time.Now().Add(time.Duration(req.For))
		what = fmt.Sprintf("drill service on %s: %s for %v", a.Name(), req.Fault, time.Duration(req.For))
		if req.Fault == ServiceFaultErrors {
			what = fmt.Sprintf("drill service on %s: errors (status %d) for %v", a.Name(), req.Status, time.Duration(req.For))
		}
	}
	if err := a.cfg.ServiceFault(r.Context(), req.Fault, req.Status, until); err != nil {
		writeError(w, fmt.Errorf("%w: drill service on %s: %w", ErrBadRequest, a.Name(), err))
		return
	}
	a.log.Warn("drill: "+what, "by", callerOf(r).name)
	o.audit(r, what)
	writeJSON(w, http.StatusOK, struct{}{})
}

// handleDrillCrash carries out a DrillCrashRequest on its node (forwarded
// there like drill inject): it records the crash, answers, and only then
// crashes, so that the caller learns it happened.
func (o *operatorAPI) handleDrillCrash(w http.ResponseWriter, r *http.Request) {
	a := o.a
	var req DrillCrashRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Node == "" {
		writeError(w, fmt.Errorf("%w: drill crash: node: required (the member whose agent crashes)", ErrBadRequest))
		return
	}
	if o.toNode(w, r, req.Node, req) {
		return
	}
	if a.cfg.Crash == nil {
		writeError(w, fmt.Errorf("%w: node: %s cannot crash itself for a drill", ErrBadRequest, a.Name()))
		return
	}
	what := fmt.Sprintf("drill crash of %s's agent", a.Name())
	a.log.Warn("drill: "+what+": exiting now without cleanup", "by", callerOf(r).name)
	// Recorded before the crash: once it has happened nothing here can.
	actx, cancel := context.WithTimeout(r.Context(), a.cfg.ApplyTimeout)
	o.audit(r.WithContext(actx), what)
	cancel()
	// The caller has its answer before the crash takes the connection.
	writeWholeOK(w)
	a.cfg.Crash()
}

// StatusWithin is Status with each member's answer awaited at most bound
// (10 ms to StatusTimeout): a member that has not answered by then is
// unreachable in this answer.
func (c *Client) StatusWithin(ctx context.Context, bound time.Duration) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status?member_timeout="+url.QueryEscape(bound.String()), nil, &s)
	return s, err
}

// DrillService takes a node's service out of service for a while, or
// puts it back.
func (c *Client) DrillService(ctx context.Context, req DrillServiceRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/drill/service", req, nil)
}

// DrillCrash makes a member's agent exit at once without cleanup.
func (c *Client) DrillCrash(ctx context.Context, req DrillCrashRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/drill/crash", req, nil)
}
