package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/newbieha/newbieha/cluster/lease"
)

// leaseEnv is what the lease runner needs from the rest of the agent: the
// applied state as the lease sees it, the voters, and a way to reach them.
type leaseEnv interface {
	// view is the applied assignment.
	view() lease.View
	// holderView is the applied assignment with the voters of the current
	// configuration and the applied lease timings.
	holderView() lease.HolderView
	// vipSpec is the VIP of the applied settings (ok false: none).
	vipSpec() (VIPSpec, bool)
	// send delivers a request to another voter and returns its answer (a
	// release gets none).
	send(ctx context.Context, to string, req lease.Request) (lease.Answer, error)
	// changed is closed on the next change of the applied state.
	changed() <-chan struct{}
	// leads reports whether this node leads Raft now.
	leads() bool
	// shedLeadership hands Raft leadership to a live witness when this
	// node leads; it returns the voter it was handed to ("" when this node
	// does not lead or no witness could take it). It blocks until the
	// transfer is done or has failed.
	shedLeadership() (to string, err error)
}

// leaseRunner runs this node's voter and, on a GPU node, its holder: the
// pure machines of package lease, with the network, the clock and the VIP
// actuator around them. It is the only code that touches the VIP.
type leaseRunner struct {
	name   string
	gpu    bool
	log    *slog.Logger
	clock  func() time.Duration
	env    leaseEnv
	newVIP VIPFactory

	mu     sync.Mutex // guards voter and holder
	voter  *lease.Voter
	holder *lease.Holder // nil on a witness

	// act serialises the actuator; what it applies is always read from
	// the holder under mu after act is taken, so the last write wins with
	// the newest state.
	act       sync.Mutex
	vip       VIP
	spec      VIPSpec
	announced uint64

	stopping atomic.Bool
	// crashed, set only by tests, makes stop do nothing at all, as if the
	// process had died: no release is sent and the fence stays as it is.
	crashed  atomic.Bool
	sends    sync.WaitGroup
	inflight sync.Map // voter name -> *atomic.Int32

	errs  repeatLog
	stats leaseStats // metrics.go

	// onHold, when set, is told after every tick and answer whether this
	// node holds its lease (hookwire.go); it must not block. holdSeq
	// orders the reports.
	onHold  func(seq uint64, holding bool, epoch uint64, stopping bool)
	holdSeq uint64

	// shedding is set while a leadership hand-off runs; shedNext is when
	// this node next looks at whether it leads, ledSince since when it
	// has led at every look (0: not at the last one); see maybeShed. Both
	// on r.clock.
	shedding atomic.Bool
	shedNext atomic.Int64
	ledSince atomic.Int64
}

// Raft leadership is kept on the witness: a GPU node that has led Raft for
// shedAfter hands leadership to a live witness. A crash or loss of the
// holder then never waits for a Raft election, and neither GPU node pays
// for the heartbeats a leader sends (over a third of the CPU an idle
// holder used when it led; docs/benchmarks.md). The witness never holds
// the VIP, so leadership handed to it stays put. shedAfter leaves an
// operator's transfer to a GPU node, or an election one won, in place for
// a while (a test can still kill a leading holder). shedCheck is how often
// a GPU node looks; shedRetry how long it waits after a hand-off that
// failed (a transfer to a voter that does not answer holds up the
// leader's commits for an election timeout).
const (
	shedAfter = 5 * time.Second
	shedCheck = time.Second
	shedRetry = 10 * time.Second
)

func newLeaseRunner(name string, gpu bool, log *slog.Logger, clock func() time.Duration, env leaseEnv, newVIP VIPFactory) *leaseRunner {
	now := clock()
	r := &leaseRunner{name: name, gpu: gpu, log: log, clock: clock, env: env, newVIP: newVIP}
	r.voter = lease.NewVoter(name, now, env.holderView().Params.Drift)
	if gpu {
		var b [8]byte
		_, _ = rand.Read(b[:])
		r.holder = lease.NewHolder(name, binary.LittleEndian.Uint64(b[:]))
	}
	return r
}

// run ticks until ctx ends, then releases: the fence is closed and the
// address removed before the voters are told, then the fence is detached.
func (r *leaseRunner) run(ctx context.Context) {
	for {
		beat(ctx, loopLease)
		ch := r.env.changed()
		next := r.tick(ctx)
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			r.stop()
			return
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// tick runs the holder once and carries out what it says.
func (r *leaseRunner) tick(ctx context.Context) time.Duration {
	v := r.env.holderView()
	v.Stopping = r.stopping.Load()
	if err := r.ensureVIP(v.Active != ""); err != nil {
		r.setErr(err)
	}
	now := r.clock()
	r.mu.Lock()
	r.voter.Observe(now, v.View)
	r.voter.SetDrift(v.Params.Drift)
	if r.holder == nil {
		r.mu.Unlock()
		return time.Second
	}
	out := r.holder.Tick(now, v)
	r.stats.tick(now, out)
	idle := r.holder.Epoch() == 0 && r.holder.Deadline() == 0 && !out.Remove && !out.SetFence && len(out.Send) == 0
	r.mu.Unlock()
	r.actuate(ctx, out)
	r.noteHold()
	r.sendAll(ctx, out.Send, v.Voters, v.Params)
	r.maybeShed(ctx)
	if idle {
		// Not active and holding nothing: nothing is due until the
		// applied state changes, which wakes run at once (changed). The
		// holder machine asks again after a renewal interval; a standby
		// waking ten times a second for nothing is measurable idle CPU.
		return idleTick
	}
	if d := out.Next - r.clock(); d > 0 {
		return d
	}
	return time.Millisecond
}

// idleTick is how often the runner of a GPU node that is not active looks
// again without a change of the applied state (as the witness does).
const idleTick = time.Second

// maybeShed hands Raft leadership to the witness, in the background, once
// this GPU node has led for shedAfter (checked every shedCheck).
func (r *leaseRunner) maybeShed(ctx context.Context) {
	now := r.clock()
	if r.stopping.Load() || ctx.Err() != nil || time.Duration(r.shedNext.Load()) > now || r.shedding.Load() {
		return
	}
	r.shedNext.Store(int64(now + shedCheck))
	if !r.env.leads() {
		r.ledSince.Store(0)
		return
	}
	since := time.Duration(r.ledSince.Load())
	if since == 0 {
		r.ledSince.Store(int64(now))
		return
	}
	if now-since < shedAfter {
		return
	}
	r.shedding.Store(true)
	r.sends.Add(1)
	go func() {
		defer r.sends.Done()
		defer r.shedding.Store(false)
		to, err := r.env.shedLeadership()
		switch {
		case err != nil:
			r.shedNext.Store(int64(r.clock() + shedRetry))
			r.log.Warn("could not hand Raft leadership to the witness", "error", err, "retry_in", shedRetry)
		case to != "":
			r.ledSince.Store(0)
			r.log.Info("handed Raft leadership to the witness", "to", to)
		}
	}()
}

// stop releases whatever this node holds and tells the voters, then closes
// the actuator (address first, then the fence).
func (r *leaseRunner) stop() {
	if r.crashed.Load() {
		return
	}
	r.stopping.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	r.tick(ctx)
	r.sends.Wait()
	r.act.Lock()
	defer r.act.Unlock()
	if r.vip != nil {
		if err := r.vip.Close(); err != nil {
			r.log.Error("close vip", "error", err)
		}
		r.vip = nil
	}
}

// actuate makes the fence and the address match the holder.
func (r *leaseRunner) actuate(ctx context.Context, out lease.Output) {
	if !out.SetFence && !out.Hold && !out.Remove && !out.Announce {
		return
	}
	r.act.Lock()
	defer r.act.Unlock()
	r.mu.Lock()
	deadline, epoch := r.holder.Deadline(), r.holder.Epoch()
	r.mu.Unlock()
	if r.vip == nil {
		return // no VIP configured: the lease only says who is active
	}
	if deadline > r.clock() {
		claimed, err := r.vip.Hold(ctx, deadline)
		if err != nil {
			r.setErr(fmt.Errorf("hold vip: %w", err))
			return
		}
		if claimed {
			r.log.Info("claimed VIP", "vip", r.spec.Prefix.String(), "epoch", epoch, "lease_left", (deadline - r.clock()).Round(time.Millisecond))
		} else if r.announced != epoch {
			// A new epoch with the same holder: announce again, so caches
			// left stale by a healed partition are corrected.
			if err := r.vip.Announce(ctx); err != nil {
				r.setErr(fmt.Errorf("announce vip: %w", err))
			}
		}
		r.announced = epoch
		return
	}
	held, _, _ := r.vip.Held()
	if err := r.vip.Release(); err != nil {
		r.setErr(fmt.Errorf("release vip: %w", err))
		return
	}
	if held {
		why := "lease ran out"
		if epoch == 0 {
			why = "no longer active"
		}
		r.log.Info("released VIP", "reason", why)
	}
	r.announced = 0
}

// sendAll sends the holder's requests: its own voter answers at once, the
// others over the network, each on its own goroutine.
func (r *leaseRunner) sendAll(ctx context.Context, envs []lease.Envelope, voters []string, p lease.Params) {
	for _, e := range envs {
		if e.To == r.name {
			if a, ok := r.answerLocal(e.Req); ok {
				r.takeAnswer(ctx, a, voters)
			}
			continue
		}
		n, _ := r.inflight.LoadOrStore(e.To, new(atomic.Int32))
		inflight := n.(*atomic.Int32)
		if !e.Req.Release && inflight.Load() >= 2 {
			continue // that voter is slow or gone: do not pile up requests
		}
		inflight.Add(1)
		r.sends.Add(1)
		go func() {
			defer r.sends.Done()
			defer inflight.Add(-1)
			cctx, cancel := context.WithTimeout(ctx, max(p.Duration/2, 50*time.Millisecond))
			defer cancel()
			a, err := r.env.send(cctx, e.To, e.Req)
			if err != nil {
				r.log.Debug("lease request failed", "voter", e.To, "release", e.Req.Release, "error", err)
				return
			}
			if !e.Req.Release {
				r.takeAnswer(ctx, a, voters)
			}
		}()
	}
}

func (r *leaseRunner) takeAnswer(ctx context.Context, a lease.Answer, voters []string) {
	if !a.Granted {
		r.log.Debug("lease refused", "voter", a.Voter, "reason", a.Reason)
	}
	r.mu.Lock()
	out := r.holder.Answer(r.clock(), a, voters)
	r.stats.answered(r.clock(), a, voters, out)
	r.mu.Unlock()
	r.actuate(ctx, out)
	r.noteHold()
}

// noteHold tells onHold whether this node holds its lease now (after the
// actuator has acted on it).
func (r *leaseRunner) noteHold() {
	if r.onHold == nil {
		return
	}
	r.mu.Lock()
	r.holdSeq++
	seq, epoch, holding := r.holdSeq, r.holder.Epoch(), r.holder.Deadline() > r.clock()
	r.mu.Unlock()
	r.onHold(seq, holding, epoch, r.stopping.Load())
}

func (r *leaseRunner) answerLocal(req lease.Request) (lease.Answer, bool) {
	now := r.clock()
	view := r.env.view()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.voter.Handle(now, view, req)
}

// handle is the voter's side of POST /v1/internal/lease: caller is the
// name in the calling node's certificate, and may only speak for itself.
func (r *leaseRunner) handle(caller string, req lease.Request) (lease.Answer, error) {
	if caller != req.From {
		return lease.Answer{}, fmt.Errorf("%w: %q may not ask for a lease as %q", ErrForbidden, caller, req.From)
	}
	if err := req.Validate(); err != nil {
		return lease.Answer{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	a, _ := r.answerLocal(req)
	return a, nil
}

// report is this voter's report for the controller.
func (r *leaseRunner) report() lease.Report {
	now := r.clock()
	view := r.env.view()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.voter.Report(now, view)
}

// LeaseState is what a node says of its own lease in status.
type LeaseState struct {
	// Epoch is the epoch this node runs lease rounds for (0: none).
	Epoch uint64 `json:"epoch,omitempty"`
	// Left is how long its fence stays open (0: closed).
	Left Duration `json:"left,omitempty"`
	// Grant is what its voter has granted.
	GrantTo   string   `json:"grant_to,omitempty"`
	GrantLeft Duration `json:"grant_left,omitempty"`
	// Quarantine is how long its voter grants nothing yet (after a start).
	Quarantine Duration `json:"quarantine,omitempty"`
}

// state reports this node's lease for status.
func (r *leaseRunner) state() LeaseState {
	now := r.clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	var s LeaseState
	if r.holder != nil {
		s.Epoch = r.holder.Epoch()
		if d := r.holder.Deadline(); d > now {
			s.Left = Duration(d - now)
		}
	}
	if g, ok := r.voter.Live(now); ok {
		s.GrantTo, s.GrantLeft = g.Node, Duration(g.Expires-now)
	}
	s.Quarantine = Duration(r.voter.Report(now, r.env.view()).Quarantine)
	return s
}

// holdsVIP reports whether the VIP address is on this host now.
func (r *leaseRunner) holdsVIP() bool {
	r.act.Lock()
	v := r.vip
	r.act.Unlock()
	if v == nil {
		return false
	}
	held, _, err := v.Held()
	return err == nil && held
}

// currentVIP returns the actuator, if any (the conflict probe uses it).
func (r *leaseRunner) currentVIP() VIP {
	r.act.Lock()
	defer r.act.Unlock()
	return r.vip
}

// ensureVIP (re)builds the VIP actuator when the VIP settings change; the
// old one is released (fence closed, address removed) and closed first.
// The first one is built only once the state names an active node
// (named): building it installs the fence on the VIP's interface, closed,
// which drops the VIP's traffic on this host, and until then the address
// may belong to another daemon here (Keepalived during a cutover from it:
// init --maintenance, docs/cutover.md). A node claims only when it is
// named, and the actuator is built before the claim in the same tick.
func (r *leaseRunner) ensureVIP(named bool) error {
	if r.newVIP == nil || !r.gpu {
		return nil
	}
	spec, ok := r.env.vipSpec()
	r.act.Lock()
	defer r.act.Unlock()
	if r.vip == nil && !named {
		return nil
	}
	if (ok && r.vip != nil && r.spec == spec) || (!ok && r.vip == nil) {
		return nil
	}
	if r.vip != nil {
		if err := r.vip.Release(); err != nil {
			return fmt.Errorf("release vip %s before a settings change: %w", r.spec.Prefix, err)
		}
		if err := r.vip.Close(); err != nil {
			r.log.Warn("close vip", "error", err)
		}
		r.vip, r.announced = nil, 0
	}
	if !ok {
		return nil
	}
	v, err := r.newVIP(spec)
	if err != nil {
		return fmt.Errorf("vip %s on %s: %w", spec.Prefix, spec.Iface, err)
	}
	r.vip, r.spec = v, spec
	if err := v.Prepare(); err != nil {
		// Hold tries again and fails closed; say it now, not at failover.
		return fmt.Errorf("vip %s on %s: this node cannot hold the VIP: %w", spec.Prefix, spec.Iface, err)
	}
	return nil
}

func (r *leaseRunner) setErr(err error) { r.errs.warn(r.log, "lease", err) }
