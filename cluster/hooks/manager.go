package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Runner runs an exec hook's command: argv with env and stdin, killed with
// its process group when ctx ends. It returns the combined output (its
// tail) and an error for a failed or killed run.
type Runner interface {
	Run(ctx context.Context, argv, env []string, stdin []byte) ([]byte, error)
}

// Doer sends a webhook's request (an *http.Client).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Clock is what the workers wait on between attempts.
type Clock interface {
	Now() time.Time
	// After is time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config is what a Manager needs.
type Config struct {
	// Node is this node's name: the default Node of an event and part of
	// every generated id.
	Node string
	// Logger receives one line per attempt that failed and per delivery;
	// nil discards.
	Logger *slog.Logger
	// QueueLen is each hook's queue (default DefaultQueueLen).
	QueueLen int
	// Runner, Doer and Clock default to the real ones (tests replace them).
	Runner Runner
	Doer   Doer
	Clock  Clock
}

// Stats are the counts of one hook since the agent started (a hook that is
// removed from the settings and added back keeps counting).
type Stats struct {
	Hook string
	// Kind is "exec" or "webhook".
	Kind string
	// Attempts by result: "ok", "error", "timeout".
	Attempts map[string]uint64
	// Delivered counts events that an attempt delivered; Failed those
	// that every attempt failed; Dropped those that found the queue full;
	// Discarded those still queued when the hook was removed or changed,
	// or the agent stopped.
	Delivered, Failed, Dropped, Discarded uint64
	// Queued is how many wait now.
	Queued int
}

// Manager delivers events to the hooks of the current settings.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	start int64 // unix nanoseconds at New: part of every generated id
	seq   atomic.Uint64

	mu      sync.Mutex
	workers map[string]*worker
	stats   map[string]*counts
	closed  bool
	wg      sync.WaitGroup
}

type counts struct {
	kind                                  string
	attempts                              map[string]uint64
	delivered, failed, dropped, discarded uint64
}

// New returns a Manager with no hooks; Set gives it some.
func New(cfg Config) *Manager {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Runner == nil {
		cfg.Runner = ExecRunner{}
	}
	if cfg.Doer == nil {
		cfg.Doer = &http.Client{
			// Never follow a redirect: a 3xx is the receiver's answer (a
			// failure), not a reason to post the signed body elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log, start: cfg.Clock.Now().UnixNano(), workers: map[string]*worker{}, stats: map[string]*counts{}}
}

// Set replaces the hooks. A hook whose settings are unchanged keeps its
// queue and its attempt in flight; a changed or removed one is stopped
// (its attempt in flight is cancelled, its queue discarded and counted).
// It returns an error, changing nothing, when a hook is invalid or two
// share a name.
func (m *Manager) Set(hooks []Hook) error {
	seen := map[string]bool{}
	for i, h := range hooks {
		if err := h.Validate(); err != nil {
			return fmt.Errorf("hook %d (%s): %w", i, h.Name, err)
		}
		if seen[h.Name] {
			return fmt.Errorf("hook %d: name %q is used twice", i, h.Name)
		}
		seen[h.Name] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("hooks: manager closed")
	}
	next := map[string]*worker{}
	for _, h := range hooks {
		if w, ok := m.workers[h.Name]; ok && same(w.hook, h) {
			next[h.Name] = w
			delete(m.workers, h.Name)
			continue
		}
		c := m.stats[h.Name]
		if c == nil {
			c = &counts{attempts: map[string]uint64{}}
			m.stats[h.Name] = c
		}
		c.kind = kindOf(h)
		next[h.Name] = m.startWorker(h, c)
	}
	for _, w := range m.workers {
		w.stop()
	}
	m.workers = next
	return nil
}

// Emit hands e to every hook that wants its kind, without blocking: a
// hook whose queue is full drops it (counted in Stats). It fills in ID,
// Node and Time when they are empty.
func (m *Manager) Emit(e Event) {
	if e.ID == "" {
		e.ID = m.cfg.Node + "-" + strconv.FormatInt(m.start, 36) + "-" + strconv.FormatUint(m.seq.Add(1), 10)
	}
	if e.Node == "" {
		e.Node = m.cfg.Node
	}
	if e.Time.IsZero() {
		e.Time = m.cfg.Clock.Now().UTC()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, w := range m.workers {
		if !w.hook.Wants(e.Event) {
			continue
		}
		select {
		case w.queue <- e:
			w.pending.Add(1)
		default:
			w.counts.dropped++
			m.log.Warn("hook queue full: event dropped", "hook", w.hook.Name, "event", e.Event, "id", e.ID, "queue", cap(w.queue))
		}
	}
}

// Stats returns the counts of every hook seen since New, by name order
// of the current hooks first.
func (m *Manager) Stats() []Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Stats, 0, len(m.stats))
	for name, c := range m.stats {
		s := Stats{Hook: name, Kind: c.kind, Attempts: map[string]uint64{}, Delivered: c.delivered, Failed: c.failed, Dropped: c.dropped, Discarded: c.discarded}
		for k, v := range c.attempts {
			s.Attempts[k] = v
		}
		if w, ok := m.workers[name]; ok {
			s.Queued = len(w.queue)
		}
		out = append(out, s)
	}
	return out
}

// Close stops every hook (attempts in flight are cancelled, queues
// discarded) and waits for their goroutines.
func (m *Manager) Close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Shutdown(ctx)
}

// Shutdown takes no more events, lets the hooks work through what is
// queued until ctx ends (an agent that stops gives its last events, such
// as released, a moment), then stops them like Close.
func (m *Manager) Shutdown(ctx context.Context) {
	m.mu.Lock()
	m.closed = true
	workers := m.workers
	m.mu.Unlock()
	for _, w := range workers {
		for w.pending.Load() > 0 && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	m.mu.Lock()
	for _, w := range m.workers {
		w.stop()
	}
	m.workers = map[string]*worker{}
	m.mu.Unlock()
	m.wg.Wait()
}

func kindOf(h Hook) string {
	if h.Webhook != nil {
		return "webhook"
	}
	return "exec"
}

// worker runs one hook's queue.
type worker struct {
	m      *Manager
	hook   Hook
	queue  chan Event
	counts *counts // guarded by m.mu
	// pending counts the events queued or in an attempt.
	pending atomic.Int64
	ctx     context.Context
	cancel  context.CancelFunc
}

// startWorker starts h's goroutine; m.mu is held.
func (m *Manager) startWorker(h Hook, c *counts) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{m: m, hook: h, queue: make(chan Event, m.cfg.QueueLen), counts: c, ctx: ctx, cancel: cancel}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run()
	}()
	return w
}

// stop cancels the worker; m.mu is held.
func (w *worker) stop() { w.cancel() }

func (w *worker) run() {
	for {
		select {
		case <-w.ctx.Done():
			w.discard()
			return
		case e := <-w.queue:
			if w.ctx.Err() != nil { // stopped: both were ready
				w.pending.Add(-1)
				w.m.mu.Lock()
				w.counts.discarded++
				w.m.mu.Unlock()
				continue
			}
			w.deliver(e)
			w.pending.Add(-1)
		}
	}
}

// discard counts what is left in the queue once the worker stopped.
func (w *worker) discard() {
	n := 0
	for {
		select {
		case <-w.queue:
			n++
			w.pending.Add(-1)
		default:
			if n > 0 {
				w.m.mu.Lock()
				w.counts.discarded += uint64(n)
				w.m.mu.Unlock()
				w.m.log.Warn("hook stopped with events queued: discarded", "hook", w.hook.Name, "events", n)
			}
			return
		}
	}
}

// deliver tries e until an attempt succeeds, the retries are spent, or the
// worker stops.
func (w *worker) deliver(e Event) {
	h := w.hook
	log := w.m.log.With("hook", h.Name, "event", e.Event, "id", e.ID, "epoch", e.Epoch)
	for attempt := 1; ; attempt++ {
		begin := w.m.cfg.Clock.Now()
		actx, cancel := context.WithTimeout(w.ctx, h.Timeout)
		err := w.attempt(actx, e, attempt)
		timedOut := errors.Is(actx.Err(), context.DeadlineExceeded)
		cancel()
		if w.ctx.Err() != nil {
			w.m.mu.Lock()
			w.counts.discarded++
			w.m.mu.Unlock()
			log.Warn("hook stopped during an attempt: event discarded", "attempt", attempt)
			return
		}
		result := "ok"
		switch {
		case err == nil:
		case timedOut:
			result = "timeout"
			err = fmt.Errorf("timed out after %v: %w", h.Timeout, err)
		default:
			result = "error"
		}
		w.m.mu.Lock()
		w.counts.attempts[result]++
		if err == nil {
			w.counts.delivered++
		}
		w.m.mu.Unlock()
		took := w.m.cfg.Clock.Now().Sub(begin).Round(time.Millisecond)
		if err == nil {
			log.Info("hook delivered", "attempt", attempt, "took", took)
			return
		}
		var perm *permanentError
		if attempt > h.Retries || errors.As(err, &perm) {
			w.m.mu.Lock()
			w.counts.failed++
			w.m.mu.Unlock()
			log.Error("hook failed: giving up", "attempt", attempt, "took", took, "error", err)
			return
		}
		pause := h.backoff(attempt)
		log.Warn("hook attempt failed: will retry", "attempt", attempt, "took", took, "retry_in", pause, "error", err)
		select {
		case <-w.ctx.Done():
			w.m.mu.Lock()
			w.counts.discarded++
			w.m.mu.Unlock()
			return
		case <-w.m.cfg.Clock.After(pause):
		}
	}
}

func (w *worker) attempt(ctx context.Context, e Event, attempt int) error {
	if w.hook.Webhook != nil {
		return post(ctx, w.m.cfg.Doer, *w.hook.Webhook, e, attempt)
	}
	return runExec(ctx, w.m.cfg.Runner, *w.hook.Exec, e, attempt)
}

// permanentError is a failure that another attempt would not change (a
// receiver's 4xx, a bad secret file): no retry.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }
