package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnknownCheck is returned by Inject and ClearInjection for a name that
// no check has.
var ErrUnknownCheck = errors.New("no such check")

// ErrStarted is returned by a second Start.
var ErrStarted = errors.New("health runner already started")

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("health runner closed")

// DefaultChangeBuffer is the capacity of Changes unless Deps says otherwise.
const DefaultChangeBuffer = 64

// Deps are the Runner's collaborators. Only those the configured kinds need
// must be set.
type Deps struct {
	// Container is required by container checks.
	Container ContainerInspector
	// GPU is required by gpu checks; *gpu.Reader in production.
	GPU GPUProbe
	// HTTPClient is used by http and http-generate checks; nil means
	// NewHTTPClient().
	HTTPClient *http.Client
	// Clock is nil for the system clock.
	Clock Clock
	// ChangeBuffer is the capacity of Changes; zero means
	// DefaultChangeBuffer.
	ChangeBuffer int
}

// Runner runs every check on its own interval, one goroutine per check,
// applies rise/fall, and reports the results and the verdict. Create it with
// New, then Start; Close stops every goroutine and waits for them.
type Runner struct {
	clock   Clock
	checks  []*check
	changes chan Result
	dropped atomic.Uint64

	mu      sync.Mutex // guards the fields below and every check's state
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// check is one configured check and its state.
type check struct {
	cfg    CheckConfig
	prober Prober
	kick   chan struct{} // capacity 1: run the next sample now

	// Guarded by Runner.mu.
	state    State
	output   string
	ok       bool
	lastRun  time.Time
	duration time.Duration // of the last sample's probe; 0 for an injected one
	latency  latencyHist   // every probe since New
	injected *injection
}

// injection forces a check's samples until a time.
type injection struct {
	status Status
	until  time.Time
}

// New validates cfg (after WithDefaults) and builds a Runner; it starts
// nothing.
func New(cfg Config, deps Deps) (*Runner, error) {
	return newRunner(cfg, deps, nil)
}

// newRunner is New with probers given by check name taking the place of the
// built-in ones (tests use it to script samples).
func newRunner(cfg Config, deps Deps, probers map[string]Prober) (*Runner, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("health config: %w", err)
	}
	if deps.Clock == nil {
		deps.Clock = systemClock{}
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = NewHTTPClient()
	}
	if deps.ChangeBuffer <= 0 {
		deps.ChangeBuffer = DefaultChangeBuffer
	}
	r := &Runner{
		clock:   deps.Clock,
		changes: make(chan Result, deps.ChangeBuffer),
	}
	now := r.clock.Now()
	for i, cc := range cfg.Checks {
		p := probers[cc.Name]
		if p == nil {
			var err error
			if p, err = builtinProber(cc, deps); err != nil {
				return nil, fmt.Errorf("health config: checks[%d] (%s): %w", i, checkID(cc.Kind, cc.Name), err)
			}
		}
		r.checks = append(r.checks, &check{
			cfg:    cc,
			prober: p,
			kick:   make(chan struct{}, 1),
			state:  NewState(now),
		})
	}
	return r, nil
}

// NewProber returns the built-in Prober of one check (defaults applied,
// then validated), for running a check once outside a Runner: a CLI's
// "check now", cmd/gpu-probe. Deps.Clock and Deps.HTTPClient may be nil.
func NewProber(cc CheckConfig, deps Deps) (Prober, error) {
	cc = cc.WithDefaults()
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	if deps.Clock == nil {
		deps.Clock = systemClock{}
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = NewHTTPClient()
	}
	p, err := builtinProber(cc, deps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", checkID(cc.Kind, cc.Name), err)
	}
	return p, nil
}

// builtinProber returns the prober of cc's kind.
func builtinProber(cc CheckConfig, deps Deps) (Prober, error) {
	switch cc.Kind {
	case KindHTTP, KindHTTPGenerate:
		return &httpProber{cfg: *cc.HTTP, client: deps.HTTPClient}, nil
	case KindExec:
		return &execProber{cfg: *cc.Exec, timeout: cc.Timeout}, nil
	case KindContainer:
		if deps.Container == nil {
			return nil, errors.New("a container check needs Deps.Container")
		}
		return &containerProber{cfg: *cc.Container, inspector: deps.Container}, nil
	case KindGPU:
		if deps.GPU == nil {
			return nil, errors.New("a gpu check needs Deps.GPU")
		}
		return &gpuProber{cfg: *cc.GPU, probe: deps.GPU, now: deps.Clock.Now}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", cc.Kind)
}

// Start launches one goroutine per check; each takes its first sample at
// once. The goroutines stop when ctx ends or Close is called. Every check
// starts unknown, since now.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return ErrClosed
	case r.started:
		return ErrStarted
	}
	r.started = true
	ctx, r.cancel = context.WithCancel(ctx)
	now := r.clock.Now()
	for _, c := range r.checks {
		c.state = NewState(now)
		r.wg.Add(1)
		go r.loop(ctx, c)
	}
	return nil
}

// Close stops every check goroutine, waits for them, and then closes the
// Changes channel. It is idempotent.
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
	close(r.changes)
	return nil
}

// Changes delivers the Result of every status change, in the order they
// happen per check. The hand-off never blocks a check: when the buffer is
// full the change is dropped and counted in Report.DroppedChanges, so a
// consumer must treat Report as the truth and Changes as a wake-up. The
// channel is closed by Close.
func (r *Runner) Changes() <-chan Result { return r.changes }

// Report returns every check's Result, the verdict and the last GPU
// telemetry.
func (r *Runner) Report() Report {
	now := r.clock.Now()
	rep := Report{At: now, Checks: make([]Result, 0, len(r.checks))}
	r.mu.Lock()
	for _, c := range r.checks {
		rep.Checks = append(rep.Checks, c.resultLocked(now))
	}
	r.mu.Unlock()
	rep.Verdict = Evaluate(rep.Checks)
	for _, c := range r.checks {
		if gp, ok := c.prober.(*gpuProber); ok {
			rep.GPU, rep.GPUError = gp.telemetry()
			break
		}
	}
	rep.DroppedChanges = r.dropped.Load()
	return rep
}

// Latencies returns a snapshot of every check's latency histogram, by check
// ID ("kind:name"): the durations of all the samples the check's prober
// took since New (injected samples are not counted, nor a sample cut short
// by Close). Report carries the same snapshots in Result.Latency.
func (r *Runner) Latencies() map[string]Histogram {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Histogram, len(r.checks))
	for _, c := range r.checks {
		out[checkID(c.cfg.Kind, c.cfg.Name)] = *c.latency.snapshot()
	}
	return out
}

// Inject forces the samples of the check named name (its name or its
// "kind:name" ID) to status until the given time: a drill. The forced
// samples go through rise/fall like real ones, so an injected failure takes
// effect after Fall samples, as a real one would; the first is taken at
// once. While it lasts the check is not probed and its Result says
// Injected. A later Inject replaces an earlier one.
func (r *Runner) Inject(name string, status Status, until time.Time) error {
	if status != StatusPassing && status != StatusFailing {
		return fmt.Errorf("inject %s: status %q must be %q or %q", name, status, StatusPassing, StatusFailing)
	}
	now := r.clock.Now()
	if !until.After(now) {
		return fmt.Errorf("inject %s: until %s is not after now (%s)", name, until.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	c := r.find(name)
	if c == nil {
		return fmt.Errorf("inject %s: %w", name, ErrUnknownCheck)
	}
	r.mu.Lock()
	c.injected = &injection{status: status, until: until}
	r.mu.Unlock()
	c.wake()
	return nil
}

// ClearInjection ends an injection early; the check is probed again at
// once. Clearing a check without an injection is not an error.
func (r *Runner) ClearInjection(name string) error {
	c := r.find(name)
	if c == nil {
		return fmt.Errorf("clear injection %s: %w", name, ErrUnknownCheck)
	}
	r.mu.Lock()
	had := c.injected != nil
	c.injected = nil
	r.mu.Unlock()
	if had {
		c.wake()
	}
	return nil
}

// find returns the check whose name or ID is name.
func (r *Runner) find(name string) *check {
	for _, c := range r.checks {
		if c.cfg.Name == name || checkID(c.cfg.Kind, c.cfg.Name) == name {
			return c
		}
	}
	return nil
}

// wake asks the check's goroutine to sample now, without blocking.
func (c *check) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// loop samples c until ctx ends: at once, then Interval after each sample
// ends (or at once when woken).
func (r *Runner) loop(ctx context.Context, c *check) {
	defer r.wg.Done()
	for {
		r.sample(ctx, c)
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-r.clock.After(c.cfg.Interval):
		}
	}
}

// sample takes one sample of c (or its injected outcome) and applies it.
func (r *Runner) sample(ctx context.Context, c *check) {
	now := r.clock.Now()
	r.mu.Lock()
	inj := c.injected
	if inj != nil && !now.Before(inj.until) {
		c.injected, inj = nil, nil
	}
	r.mu.Unlock()

	var s Sample
	var took time.Duration // real time, like the timeout: it measures real I/O
	if inj != nil {
		s = Sample{
			OK:     inj.status == StatusPassing,
			Output: fmt.Sprintf("injected %s until %s", inj.status, inj.until.UTC().Format(time.RFC3339)),
		}
	} else {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		start := time.Now()
		s = c.prober.Probe(pctx)
		took = time.Since(start) // monotonic: a wall clock step does not skew it
		cancel()
	}
	if ctx.Err() != nil {
		return // stopping: a sample cut short by Close is not evidence
	}

	end := r.clock.Now()
	r.mu.Lock()
	next, changed := Step(c.state, s.OK, c.cfg.Rise, c.cfg.Fall, end)
	c.state, c.ok, c.lastRun, c.duration = next, s.OK, end, took
	if inj == nil {
		c.latency.observe(took) // an injected sample probes nothing
	}
	c.output = truncate(s.Output, MaxOutput)
	res := c.resultLocked(end)
	r.mu.Unlock()
	if changed {
		select {
		case r.changes <- res:
		default:
			r.dropped.Add(1)
		}
	}
}

// resultLocked builds c's Result as of now; r.mu must be held.
func (c *check) resultLocked(now time.Time) Result {
	res := Result{
		Name:            c.cfg.Name,
		Kind:            c.cfg.Kind,
		Required:        c.cfg.Required,
		Status:          c.state.Status,
		Output:          c.output,
		OK:              c.ok,
		Since:           c.state.Since,
		LastRun:         c.lastRun,
		ConsecutiveOK:   c.state.ConsecutiveOK,
		ConsecutiveFail: c.state.ConsecutiveFail,
		Duration:        c.duration,
		Latency:         c.latency.snapshot(),
	}
	if c.injected != nil && now.Before(c.injected.until) {
		res.Injected, res.InjectedUntil = true, c.injected.until
	}
	return res
}
