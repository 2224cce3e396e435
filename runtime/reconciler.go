package runtime

import (
	"context"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"sync"
	"time"
)

// Mode is the standby mode of the service.
type Mode string

// The standby modes.
const (
	// Hot runs the container on every GPU node; only the VIP moves, so a
	// failover does not wait for the model to load. The default.
	Hot Mode = "hot"
	// Cold runs the container only on the active node; the standby stops it.
	Cold Mode = "cold"
)

// ParseMode returns the mode named by s; "" means Hot.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Hot:
		return Hot, nil
	case Cold:
		return Cold, nil
	default:
		return "", fmt.Errorf("standby mode %q is not hot or cold", s)
	}
}

// WantFor returns what a node wants in mode m: Running on every node in
// Hot mode, and in Cold mode only on the active node.
func WantFor(m Mode, active bool) Want {
	if m == Cold && !active {
		return Stopped
	}
	return Running
}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// Driver runs the container. Required.
	Driver Driver
	// Spec is the service. Required (validated).
	Spec Spec
	// Mode is Hot or Cold; "" means Hot.
	Mode Mode
	// Interval is the resync period when nothing changes; 0 means 5 s. A
	// container that died or was removed by hand is put back within it.
	Interval time.Duration
	// Backoff spaces the retries after a failed Ensure (daemon down,
	// image missing, start failing); the zero value has sensible defaults.
	Backoff Backoff
	// Logger receives state changes and errors; nil discards them.
	Logger *slog.Logger
}

// DefaultInterval is the resync period of a Reconciler.
const DefaultInterval = 5 * time.Second

// Status is what a Reconciler last did and saw.
type Status struct {
	// Want is what the last attempt aimed for.
	Want Want `json:"want"`
	// Active is the last value given to Update.
	Active bool `json:"active"`
	// State is the last observed state of the container. While the
	// runtime is unreachable its Status is StatusUnavailable and its Error
	// the reason; after another failure, Error holds the failure.
	State State `json:"state"`
	// Err is the error of the last attempt, nil if it succeeded.
	Err error `json:"-"`
	// Failures counts the consecutive failed attempts.
	Failures int `json:"failures"`
	// At is when the last attempt ended; zero before the first.
	At time.Time `json:"at,omitzero"`
}

// Reconciler keeps this host's container in line with the standby mode and
// whether this node is active: Run loops, calling Driver.Ensure on every
// change (Update, SetSpec) and every Interval, and retries with backoff
// while it fails. A drill may hold it off for a bounded time (Suspend).
type Reconciler struct {
	driver   Driver
	mode     Mode
	interval time.Duration
	backoff  Backoff
	log      *slog.Logger
	wake     chan struct{}

	mu     sync.Mutex
	spec   Spec
	active bool
	status Status
	// holdUntil is the end of a drill's hold (Suspend): no Ensure runs
	// before it; zero when none.
	holdUntil time.Time
}

// NewReconciler checks cfg and returns a Reconciler; Run starts it. The node
// starts as not active.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Driver == nil {
		return nil, errors.New("reconciler: driver: required")
	}
	if err := cfg.Spec.Validate(); err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return nil, fmt.Errorf("reconciler: mode: %w", err)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("reconciler: interval: %s is negative", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = logging.Discard()
	}
	return &Reconciler{
		driver:   cfg.Driver,
		mode:     mode,
		interval: cfg.Interval,
		backoff:  cfg.Backoff,
		log:      cfg.Logger,
		wake:     make(chan struct{}, 1),
		spec:     cfg.Spec,
	}, nil
}

// Update tells the reconciler whether this node is the active one. It never
// blocks; Run acts on it at once.
func (r *Reconciler) Update(active bool) {
	r.mu.Lock()
	changed := r.active != active
	r.active = active
	r.mu.Unlock()
	if changed {
		r.poke()
	}
}

// SetSpec replaces the service spec (the cluster settings changed); Run
// recreates the container if its hash differs.
func (r *Reconciler) SetSpec(spec Spec) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("reconciler: %w", err)
	}
	r.mu.Lock()
	r.spec = spec
	r.mu.Unlock()
	r.poke()
	return nil
}

func (r *Reconciler) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Status returns what the last attempt did and saw.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// State returns the last observed container state.
func (r *Reconciler) State() State {
	return r.Status().State
}

// Run reconciles until ctx ends, then returns ctx's error. A failing
// Ensure does not stop it: it logs, waits the backoff delay (cut short by
// Update or SetSpec) and tries again.
func (r *Reconciler) Run(ctx context.Context) error {
	failures := 0
	for {
		if d := r.heldFor(); d > 0 {
			// A drill holds the container stopped or paused: wait for the
			// hold's end (or Release, which pokes) before touching it.
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-r.wake:
				t.Stop()
			case <-t.C:
			}
			continue
		}
		r.mu.Lock()
		spec, active := r.spec, r.active
		r.mu.Unlock()
		want := WantFor(r.mode, active)

		st, err := r.driver.Ensure(ctx, spec, want)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failures++
		} else {
			failures = 0
		}
		r.record(want, active, st, err, failures)

		delay := r.interval
		if err != nil {
			delay = r.backoff.Delay(failures - 1)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-r.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// record stores the outcome of one attempt and logs what changed.
func (r *Reconciler) record(want Want, active bool, st State, err error, failures int) {
	if errors.Is(err, ErrUnavailable) {
		// Nothing is known about the container; say so rather than
		// keep a stale picture.
		st = State{Status: StatusUnavailable, Error: err.Error()}
	} else if err != nil && st.Error == "" {
		st.Error = err.Error()
	}
	r.mu.Lock()
	prev := r.status
	r.status = Status{Want: want, Active: active, State: st, Err: err, Failures: failures, At: time.Now()}
	r.mu.Unlock()

	switch {
	case err != nil && (prev.Err == nil || prev.Err.Error() != err.Error()):
		r.log.Error("service container not reconciled; retrying", "want", want, "mode", r.mode, "error", err)
	case err != nil:
		r.log.Debug("service container still not reconciled", "want", want, "failures", failures, "error", err)
	case prev.Err != nil:
		r.log.Info("service container reconciled after failures", "want", want, "status", st.Status, "failures", prev.Failures)
	}
	if err == nil && (prev.State.ContainerID != st.ContainerID || prev.State.Status != st.Status || prev.Want != want) {
		r.log.Info("service container", "want", want, "mode", r.mode, "active", active,
			"status", st.Status, "container", st.Name, "id", shortID(st.ContainerID), "health", st.Health)
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
