package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/health"
	"github.com/newbieha/newbieha/health/gpu"
	wruntime "github.com/newbieha/newbieha/runtime"
)

// services are a GPU node's health checks and workload, rebuilt from the
// replicated settings whenever they change. They implement the small
// interfaces the cluster package declares (HealthReporter, Workload).
type services struct {
	ctx     context.Context
	node    string
	cluster string // cluster id for container labels
	log     *slog.Logger

	// applyMu serialises the slow rebuilds (OnSettings, Close); mu guards
	// the fields and is only held briefly, so the agent's calls (Healthy,
	// SetActive) never wait for a rebuild.
	applyMu   sync.Mutex
	mu        sync.Mutex
	runner    *health.Runner
	gpu       *gpu.Reader
	checksKey string
	rec       *wruntime.Reconciler
	recStop   context.CancelFunc
	recDone   chan struct{}
	driver    wruntime.Driver
	svcKey    string
	active    bool
	// healthURL is service.health_url, for the service-errors drill.
	healthURL string
}

func newServices(ctx context.Context, dataDir, node string, log *slog.Logger) *services {
	id := "newbieha"
	if b, err := pki.LoadBundle(filepath.Join(dataDir, "tls")); err == nil {
		id = "nbha-" + pki.Hash(b.CA.Cert)[:12]
	}
	return &services{ctx: ctx, node: node, cluster: id, log: log}
}

// checksOf turns the settings into health checks: the configured ones, and
// service.health_url as a required http check named "service".
func checksOf(s cluster.Settings) (health.Config, error) {
	var cfg health.Config
	if len(s.Checks) > 0 {
		// The replicated form is JSON, which is YAML too; yaml.v3 reads
		// durations such as "1s" and refuses unknown keys.
		j, err := json.Marshal(s.Checks)
		if err != nil {
			return cfg, fmt.Errorf("checks: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(j))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg.Checks); err != nil {
			return cfg, fmt.Errorf("checks: %w", err)
		}
	}
	if s.Service.HealthURL != "" {
		cfg.Checks = append(cfg.Checks, health.CheckConfig{Name: "service", Kind: "http", Required: true, HTTP: &health.HTTPConfig{URL: s.Service.HealthURL}})
	}
	if s.Service.Runtime == "docker" {
		cfg.Checks = append(cfg.Checks, health.CheckConfig{Name: "container", Kind: "container", Required: true})
	}
	cfg = cfg.WithDefaults()
	return cfg, cfg.Validate()
}

// specOf returns the container spec of runtime docker.
func specOf(ctx context.Context, s cluster.Settings) (wruntime.Spec, error) {
	if s.Service.ComposeFile != "" {
		return wruntime.LoadCompose(ctx, s.Service.ComposeFile, s.Service.ComposeService)
	}
	var spec wruntime.Spec
	j, err := json.Marshal(s.Service.Container)
	if err != nil {
		return spec, fmt.Errorf("service.container: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(j))
	dec.KnownFields(true)
	if err := dec.Decode(&spec); err != nil {
		return spec, fmt.Errorf("service.container: %w", err)
	}
	if err := spec.Validate(); err != nil {
		return spec, fmt.Errorf("service.container: %w", err)
	}
	return spec, nil
}

// validateSettings checks the parts of the settings whose schema belongs to
// health and runtime.
func validateSettings(s cluster.Settings) error {
	var errs []error
	if _, err := checksOf(s); err != nil {
		errs = append(errs, err)
	}
	if s.Service.Runtime == "docker" {
		if _, err := specOf(context.Background(), s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// OnSettings rebuilds what changed.
func (v *services) OnSettings(s cluster.Settings) {
	if err := v.applyChecks(s); err != nil {
		v.log.Error("health checks not changed", "error", err)
	}
	if err := v.applyService(s); err != nil {
		v.log.Error("workload not changed", "error", err)
	}
}

func (v *services) applyChecks(s cluster.Settings) error {
	cfg, err := checksOf(s)
	if err != nil {
		return err
	}
	key, _ := json.Marshal(cfg)
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	if string(key) == v.checksKey {
		return nil
	}
	deps := health.Deps{Container: health.ContainerInspectorFunc(v.inspect)}
	for _, c := range cfg.Checks {
		if c.Kind == "gpu" && v.gpu == nil {
			v.gpu = gpu.New(gpu.Options{})
		}
	}
	if v.gpu != nil {
		deps.GPU = v.gpu
	}
	r, err := health.New(cfg, deps)
	if err != nil {
		return err
	}
	if err := r.Start(v.ctx); err != nil {
		return err
	}
	v.mu.Lock()
	old := v.runner
	v.runner = r
	v.mu.Unlock()
	if old != nil {
		old.Close()
	}
	v.checksKey = string(key)
	v.log.Info("health checks configured", "checks", len(cfg.Checks))
	return nil
}

func (v *services) applyService(s cluster.Settings) error {
	v.mu.Lock()
	v.healthURL = s.Service.HealthURL
	v.mu.Unlock()
	key, _ := json.Marshal(s.Service)
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	if string(key) == v.svcKey {
		return nil
	}
	v.stopWorkload()
	v.svcKey = string(key)
	if s.Service.Runtime != "docker" {
		return nil
	}
	spec, err := specOf(v.ctx, s)
	if err != nil {
		return err
	}
	mode, err := wruntime.ParseMode(s.Service.Standby)
	if err != nil {
		return err
	}
	d, err := wruntime.NewDocker(wruntime.DockerConfig{Cluster: v.cluster, Node: v.node})
	if err != nil {
		return err
	}
	rec, err := wruntime.NewReconciler(wruntime.ReconcilerConfig{Driver: d, Spec: spec, Mode: mode, Logger: logging.Named(v.log, "runtime")})
	if err != nil {
		d.Close()
		return err
	}
	ctx, cancel := context.WithCancel(v.ctx)
	done := make(chan struct{})
	v.mu.Lock()
	rec.Update(v.active)
	v.rec, v.recStop, v.recDone, v.driver = rec, cancel, done, d
	v.mu.Unlock()
	go func() {
		defer close(done)
		_ = rec.Run(ctx)
	}()
	v.log.Info("workload configured", "container", spec.Name, "image", spec.Image, "standby", mode)
	return nil
}

// stopWorkload stops the reconciler (not the container: a restarted
// agent adopts it). Called with applyMu held.
func (v *services) stopWorkload() {
	v.mu.Lock()
	rec, stop, done, d := v.rec, v.recStop, v.recDone, v.driver
	v.rec, v.driver = nil, nil
	v.mu.Unlock()
	if rec == nil {
		return
	}
	stop()
	<-done
	_ = d.Close()
}

// inspect adapts the runtime's view for the container check.
func (v *services) inspect(ctx context.Context) (health.ContainerState, error) {
	v.mu.Lock()
	d := v.driver
	v.mu.Unlock()
	if d == nil {
		return health.ContainerState{}, errors.New("no container: service.runtime is not docker")
	}
	st, err := d.Inspect(ctx)
	if err != nil {
		return health.ContainerState{}, err
	}
	return health.ContainerState{Exists: st.Exists, Running: st.Running, Status: st.Status, Health: st.Health, RestartCount: st.RestartCount, ExitCode: st.ExitCode}, nil
}

// Healthy implements cluster.HealthReporter.
func (v *services) Healthy() (bool, string) {
	v.mu.Lock()
	r := v.runner
	v.mu.Unlock()
	if r == nil {
		// The settings have not reached the checks yet: no verdict, and
		// no node may be chosen on a verdict it does not have.
		return false, "starting: health checks not configured yet"
	}
	rep := r.Report()
	if rep.Healthy {
		return true, ""
	}
	why := rep.Reason
	for _, c := range rep.Checks {
		if string(c.Kind)+":"+c.Name == rep.Reason && c.Injected {
			why += " (drill)"
		}
	}
	return false, why
}

// Pending implements cluster.HealthReporter: no verdict yet, because the
// checks are not configured or a required one has not reached rise or
// fall since it started (all that keeps the node from healthy is unknown).
func (v *services) Pending() bool {
	v.mu.Lock()
	r := v.runner
	v.mu.Unlock()
	if r == nil {
		return true
	}
	rep := r.Report()
	if rep.Healthy {
		return false
	}
	for _, c := range rep.Checks {
		if c.Required && c.Status != health.StatusPassing && c.Status != health.StatusUnknown {
			return false
		}
	}
	return true
}

// Detail implements cluster.HealthReporter.
func (v *services) Detail() any {
	v.mu.Lock()
	r := v.runner
	rec := v.rec
	v.mu.Unlock()
	out := map[string]any{}
	if r != nil {
		out["report"] = r.Report()
	}
	if rec != nil {
		out["workload"] = rec.Status()
	}
	return out
}

// SetActive implements cluster.Workload.
func (v *services) SetActive(active bool) {
	v.mu.Lock()
	changed := active != v.active
	v.active = active
	rec := v.rec
	v.mu.Unlock()
	if rec != nil && changed {
		rec.Update(active)
	}
}

// Drill forces a check's result until a time; a zero until ends an
// earlier injection at once.
func (v *services) Drill(check string, passing bool, until time.Time) error {
	v.mu.Lock()
	r := v.runner
	v.mu.Unlock()
	if r == nil {
		return errors.New("no health checks are configured")
	}
	if until.IsZero() {
		return r.ClearInjection(check)
	}
	st := health.StatusFailing
	if passing {
		st = health.StatusPassing
	}
	return r.Inject(check, st, until)
}

// Close stops everything.
func (v *services) Close() {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	v.mu.Lock()
	r := v.runner
	v.runner = nil
	v.mu.Unlock()
	if r != nil {
		r.Close()
	}
	v.stopWorkload()
	if v.gpu != nil {
		_ = v.gpu.Close()
		v.gpu = nil
	}
}
