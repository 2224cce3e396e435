package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/newbieha/newbieha/cluster"
	wruntime "github.com/newbieha/newbieha/runtime"
)

// ServiceFault implements cluster.Config.ServiceFault: stop and pause go
// through the runtime reconciler's hold (service.runtime docker), errors
// through the service's fault switch (the stub model server's POST
// /fault, on the host and port of service.health_url). A zero until puts
// the service back at once; each fault also ends by itself at until.
func (v *services) ServiceFault(ctx context.Context, fault string, status int, until time.Time) error {
	switch fault {
	case cluster.ServiceFaultStop, cluster.ServiceFaultPause:
		v.mu.Lock()
		rec := v.rec
		v.mu.Unlock()
		if rec == nil {
			return fmt.Errorf("service.runtime is not docker here: newbieha runs no container to %s", fault)
		}
		if until.IsZero() {
			rec.Release()
			return nil
		}
		how := wruntime.SuspendStop
		if fault == cluster.ServiceFaultPause {
			how = wruntime.SuspendPause
		}
		_, err := rec.Suspend(ctx, how, until)
		return err
	case cluster.ServiceFaultErrors:
		v.mu.Lock()
		health := v.healthURL
		v.mu.Unlock()
		return switchServiceFault(ctx, health, status, until)
	}
	return fmt.Errorf("fault %q is not %s, %s or %s", fault, cluster.ServiceFaultStop, cluster.ServiceFaultPause, cluster.ServiceFaultErrors)
}

// switchServiceFault sets the service's fault switch at the host and port
// of healthURL: errors with status until until (the switch takes the
// bound, so it ends by itself), or none for a zero until.
func switchServiceFault(ctx context.Context, healthURL string, status int, until time.Time) error {
	if healthURL == "" {
		return fmt.Errorf("service.health_url is not set: no service to switch to errors")
	}
	u, err := url.Parse(healthURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("service.health_url %q: not a URL with a host", healthURL)
	}
	fault := map[string]any{"mode": "none"}
	if !until.IsZero() {
		secs := time.Until(until).Round(time.Second)
		if secs < time.Second {
			return fmt.Errorf("until %s is not in the future", until.Format(time.RFC3339))
		}
		fault = map[string]any{"mode": "error", "status": status, "for": secs.String()}
	}
	body, _ := json.Marshal(fault)
	target := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/fault"}).String()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("service fault switch: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("service fault switch POST %s: %w", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("service fault switch POST %s: status %d (%s): the service has no fault switch like the stub model server's", target, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// crashNow implements cluster.Config.Crash: the process kills itself with
// SIGKILL, so nothing runs after (no deferred cleanup, no hand-over, no
// VIP removal), exactly as in a crash; the service manager sees a process
// killed by a signal and starts it again (systemd Restart=on-failure).
func crashNow() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not delivered late; never return meanwhile
}
