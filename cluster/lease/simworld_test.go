package lease

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// The simulated world: three agents (node1 and node2 with a GPU, the
// witness a voter only) driven by one seeded scheduler in simulated real
// time. Everything random comes from one rand.Rand, so a seed replays
// exactly. What is modelled:
//
//   - Clocks: each node reads its own clock, off + t·(1+ppm/10⁶) for real
//     time t, with a per-node offset and a rate within 1 ± simPPM/10⁶. Every
//     lease Time handed to a node's Voter or Holder is its own reading.
//   - The fence: a GPU node's kernel fence holds a deadline on the node's
//     own clock; the node answers for the VIP while its reading is below
//     it. A crashed or paused node's fence still runs out on time; a
//     restarted agent closes it first.
//   - Raft, as far as the lease sees it: a committed log (moves, settings,
//     maintenance), a leader among connected live voters (elections after a
//     timeout, transfers), each node's stored log and applied index that
//     follow the leader with a delay while connected. A crash keeps the
//     stored log and the applied prefix; a wiped node starts empty, counts
//     for no quorum and catches up from the leader.
//   - The leader's controller runs Decide on its own applied state, its own
//     voter's Report and the (older) reports it gathered over the network.
//   - The network: every lease request, answer, release and report is a
//     message with its own delay (a long tail up to seconds), loss and
//     duplication, so messages reorder; links cut in any pattern, one-way
//     included; a message is checked against the links when sent, so one
//     in flight still arrives after a partition starts.
//   - Pauses: a paused node runs nothing; what arrives meanwhile is queued
//     and handled when it resumes. A pause can fall inside a step: the clock
//     was read and the machine decided, and the rest (the fence write, the
//     sends) lands late with the values computed before the pause.

// simPPM bounds the clock rates: 1 ± 2.4 %, so two clocks differ in rate by
// a factor below (1+ρ)/(1-ρ) < 1.05. Params.Validate requires Drift ≥
// Duration/20, so ε/L ≥ 5 % covers the worst pair of clocks.
const simPPM = 24_000

// simHeldFor is how long a holder must keep the VIP, without a gap, for the
// liveness check to pass.
const simHeldFor = time.Second

var (
	simNames  = [3]string{"node1", "node2", "witness"}
	simVoters = []string{"node1", "node2", "witness"}
	simGPU    = []string{"node1", "node2"}
)

type simKind uint8

const (
	simMove simKind = iota
	simSettings
	simMaint
)

// simEntry is a committed log entry.
type simEntry struct {
	kind   simKind
	to     string
	epoch  uint64
	reason string
	params Params
	maint  bool
	wall   int64 // the proposer's wall clock, ns
}

func (e simEntry) String() string {
	switch e.kind {
	case simMove:
		return fmt.Sprintf("move to %s epoch %d (%s)", e.to, e.epoch, e.reason)
	case simSettings:
		return fmt.Sprintf("settings L=%v ε=%v R=%v retry=%v", e.params.Duration, e.params.Drift, e.params.Renew, e.params.Retry)
	}
	return fmt.Sprintf("maintenance %v", e.maint)
}

// simState is what a node's applied log says.
type simState struct {
	view   View
	since  int64 // wall clock of the move
	reason string
	params Params
	maint  bool
}

type simReport struct {
	r  Report
	at Time // the leader's reading when it arrived
	ok bool
}

type simNode struct {
	idx      int
	name     string
	gpu      bool
	ppm, off int64 // the clock: off + t + t·ppm/10⁶
	wallOff  int64

	up       bool
	inc      int // incarnation: bumped by every crash and restart
	restarts uint64
	paused   bool
	pauseGen uint64
	cont     []func()    // the rest of a step a pause fell into
	deferred []*simEvent // what arrived while paused
	stopping bool

	voter   *Voter
	holder  *Holder
	tickGen uint64

	fence     Time  // kernel fence deadline on this node's clock (0: closed)
	openUntil int64 // real time the fence closes(d)
	hold      bool  // the address is present

	log      []simEntry // stored Raft log (always a prefix of the committed one)
	applied  int
	eligible bool // counts for quorums: not a wiped node still catching up
	state    simState
	healthy  bool
	reports  [3]simReport

	// Targeted faults.
	pauseAfterSend  int64         // pause this long right after the next round is sent
	pauseWhenHeld   bool          // ... the next round sent while the fence is open
	crashAfterGrant bool          // crash right after the next grant is sent
	slowReleases    bool          // this run's releases arrive late
	isolateAfter    time.Duration // cut off once it holds a lease of this length
}

// clock is the node's reading at real time t.
func (n *simNode) clock(t int64) Time { return Time(n.off + t + t*n.ppm/1_000_000) }

// realAt is the first real time at which the node's clock reads at least l.
func (n *simNode) realAt(l Time) int64 {
	t := (int64(l) - n.off) * 1_000_000 / (1_000_000 + n.ppm)
	for n.clock(t) < l {
		t++
	}
	for n.clock(t-1) >= l {
		t--
	}
	return t
}

func (n *simNode) fenceOpen(t int64) bool { return n.fence > n.clock(t) }

type simEvent struct {
	at   int64
	seq  uint64
	node int // -1: the world (Raft, faults, operators)
	inc  int // -1: any incarnation of node (a message)
	what string
	fn   func()
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	return q[i].at < q[j].at || (q[i].at == q[j].at && q[i].seq < q[j].seq)
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simNet struct {
	loss, dup         float64
	base              int64 // delays are 50µs + [0, base)
	slow, verySlow    float64
	midPause          float64 // a pause falls inside a step
	restartAfterGrant float64
}

// simResult is what one seed did.
type simResult struct {
	seed     uint64
	fail     string
	trace    []string
	events   int
	simTime  time.Duration
	healAt   time.Duration
	bound    time.Duration
	recovery time.Duration // from healing to the holder that held to the end
	handoffs int           // fence opened on the other node than the last one
	minGap   time.Duration // shortest time between one fence closing and the other opening
}

type world struct {
	rng   *rand.Rand
	bugs  Bugs
	now   int64
	seq   uint64
	q     simQueue
	nodes [3]*simNode
	link  [3][3]bool
	net   simNet

	committed     []simEntry
	lastEpoch     uint64
	leader        int
	term          uint64
	leaderBad     int64
	noLeaderSince int64
	electTimeout  int64
	pending       bool
	holdDown      time.Duration
	faultMean     int64
	faultWeight   [fKinds]float64
	preferred     string
	preempt       bool
	maxLease      time.Duration // the longest L+ε ever committed

	faultEnd, end, healAt int64
	healed                bool
	bound                 int64
	holdSince             int64 // since when some node holds without a gap (-1: none now)

	lastHolder int
	res        simResult

	traceN int
	trace  []string
	tpos   int
}

func newWorld(seed uint64, bugs Bugs, traceN int) *world {
	w := &world{rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), bugs: bugs, leader: -1, leaderBad: -1, traceN: traceN, lastHolder: -1, holdSince: -1}
	w.res.seed = seed
	w.res.minGap = time.Hour
	r := w.rng
	for i := range w.nodes {
		n := &simNode{idx: i, name: simNames[i], gpu: i < 2, up: true, eligible: true, healthy: true}
		n.ppm = r.Int64N(2*simPPM+1) - simPPM
		if r.IntN(2) == 0 {
			n.ppm = simPPM * (2*r.Int64N(2) - 1) // the fastest or the slowest clock allowed
		}
		n.off = int64(time.Minute) + r.Int64N(int64(1000*time.Hour))
		n.wallOff = int64(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano()) + r.Int64N(int64(time.Second)) - int64(500*time.Millisecond)
		n.state.params = DefaultParams()
		w.nodes[i] = n
	}
	for i := range w.link {
		for j := range w.link[i] {
			w.link[i][j] = true
		}
	}
	w.netFaulty()
	w.electTimeout = int64(150*time.Millisecond) + r.Int64N(int64(1350*time.Millisecond))
	w.holdDown = time.Duration(r.Int64N(int64(3 * time.Second)))
	w.faultMean = int64(50*time.Millisecond) + r.Int64N(int64(time.Second))
	w.drawFaults()
	// Half the seeds start from a cluster formed long ago, half from a
	// fresh one whose voters are all in quarantine.
	warm := r.IntN(2) == 0
	if r.IntN(3) == 0 {
		w.preempt, w.preferred = true, simGPU[r.IntN(2)]
	}
	w.maxLease = DefaultParams().Duration + DefaultParams().Drift
	w.faultEnd = int64(5*time.Second) + r.Int64N(int64(15*time.Second))
	w.noLeaderSince = 0
	for _, n := range w.nodes {
		w.startAgent(n)
		if warm {
			n.voter = NewVoter(n.name, n.clock(0)-Quarantine, n.state.params.Drift)
			n.voter.plant = w.bugs
		}
	}
	return w
}

// netFaulty draws the network's misbehaviour for the fault phase.
func (w *world) netFaulty() {
	r := w.rng
	w.net = simNet{
		loss:              r.Float64() * 0.2,
		dup:               r.Float64() * 0.1,
		base:              int64(100*time.Microsecond) + r.Int64N(int64(5*time.Millisecond)),
		slow:              r.Float64() * 0.1,
		verySlow:          r.Float64() * 0.02,
		midPause:          r.Float64() * 0.01,
		restartAfterGrant: r.Float64() * 0.005,
	}
}

func (w *world) tracef(format string, args ...any) {
	if w.traceN == 0 {
		return
	}
	s := fmt.Sprintf("%10.6fs ", float64(w.now)/1e9) + fmt.Sprintf(format, args...)
	if len(w.trace) < w.traceN {
		w.trace = append(w.trace, s)
		return
	}
	w.trace[w.tpos] = s
	w.tpos = (w.tpos + 1) % w.traceN
}

func (w *world) lastTrace() []string {
	return append(slices.Clone(w.trace[w.tpos:]), w.trace[:w.tpos]...)
}

func (w *world) failf(format string, args ...any) {
	if w.res.fail == "" {
		w.res.fail = fmt.Sprintf("at %.6fs: ", float64(w.now)/1e9) + fmt.Sprintf(format, args...)
		w.tracef("FAIL %s", w.res.fail)
	}
}

// at schedules fn after d; node work (node ≥ 0) is dropped when the node is
// down or (inc ≥ 0) restarted since, and queued while it is paused.
func (w *world) at(d int64, node, inc int, what string, fn func()) {
	w.seq++
	heap.Push(&w.q, &simEvent{at: w.now + max(d, 0), seq: w.seq, node: node, inc: inc, what: what, fn: fn})
}

func (w *world) dispatch(ev *simEvent) {
	if ev.node >= 0 {
		n := w.nodes[ev.node]
		if !n.up || (ev.inc >= 0 && ev.inc != n.inc) {
			return
		}
		if n.paused {
			n.deferred = append(n.deferred, ev)
			return
		}
	}
	w.res.events++
	ev.fn()
	w.check()
}

func (w *world) faulting() bool { return !w.healed }

// later schedules the rest of a fault; the heal cancels it.
func (w *world) later(d int64, node, inc int, what string, fn func()) {
	w.at(d, node, inc, what, func() {
		if !w.healed {
			fn()
		}
	})
}

// run plays the seed to its end.
func (w *world) run() simResult {
	w.at(0, -1, -1, "raft", w.raftTick)
	w.at(int64(100*time.Millisecond), -1, -1, "decide", w.decideTick)
	w.at(0, -1, -1, "fault", w.fault)
	w.at(w.faultEnd, -1, -1, "heal", w.heal)
	w.end = w.faultEnd + int64(time.Hour) // set properly by heal
	for w.q.Len() > 0 && w.res.fail == "" {
		ev := heap.Pop(&w.q).(*simEvent)
		if ev.at > w.end {
			w.now = w.end
			break
		}
		w.now = ev.at
		w.dispatch(ev)
	}
	if w.res.fail == "" {
		w.check()
		w.checkLiveness()
	}
	w.res.simTime = time.Duration(w.now)
	w.res.healAt = time.Duration(w.healAt)
	w.res.bound = time.Duration(w.bound)
	if w.traceN > 0 {
		w.res.trace = w.lastTrace()
	}
	return w.res
}

// check is the rule, at every step: at most one fence open; and the log
// facts.
func (w *world) check() {
	holder, open := -1, 0
	for _, n := range w.nodes[:2] {
		if n.fenceOpen(w.now) {
			holder = n.idx
			open++
		}
	}
	if open > 1 {
		var s []string
		for _, n := range w.nodes[:2] {
			s = append(s, fmt.Sprintf("%s (fence %v left, up=%v paused=%v holder epoch %d, applied %s@%d)", n.name, n.fence-n.clock(w.now), n.up, n.paused, n.holderEpoch(), n.state.view.Active, n.state.view.Epoch))
		}
		w.failf("two holders: %s", strings.Join(s, " and "))
		return
	}
	if !w.healed {
		return
	}
	if holder >= 0 && w.nodes[holder].hold && w.nodes[holder].healthy {
		if w.holdSince < 0 {
			w.holdSince = w.now
		}
		if w.now-w.holdSince >= int64(simHeldFor) {
			w.end = min(w.end, w.now) // live: the VIP is held and kept
		}
	} else {
		w.holdSince = -1
	}
}

func (n *simNode) holderEpoch() uint64 {
	if n.holder == nil {
		return 0
	}
	return n.holder.Epoch()
}

// checkLog: a node's stored log is a prefix of the committed log, its
// applied index within it, and the committed log is not lost.
func (w *world) checkLog(n *simNode) {
	if len(n.log) > len(w.committed) || n.applied > len(n.log) {
		w.failf("%s: log %d entries, applied %d, committed %d", n.name, len(n.log), n.applied, len(w.committed))
		return
	}
	for i, e := range n.log {
		if e != w.committed[i] {
			w.failf("%s: log entry %d is %v, committed %v", n.name, i, e, w.committed[i])
			return
		}
	}
}

// historyKept: some node with its data holds the whole committed log.
func (w *world) historyKept() {
	for _, n := range w.nodes {
		if len(n.log) == len(w.committed) {
			return
		}
	}
	w.failf("committed history lost: no node stores all %d entries", len(w.committed))
}

// ---- the agents ----

// startAgent starts the agent of n: it closes the fence and removes the
// address first, then starts a voter in quarantine and a holder with a fresh
// nonce base.
func (w *world) startAgent(n *simNode) {
	n.fence, n.hold, n.stopping, n.slowReleases = 0, false, false, false
	w.fenceWritten(n)
	n.voter = NewVoter(n.name, n.clock(w.now), n.state.params.Drift)
	n.voter.plant = w.bugs
	n.holder = nil
	if n.gpu {
		n.holder = NewHolder(n.name, w.rng.Uint64())
		n.holder.plant = w.bugs
	}
	n.reports = [3]simReport{}
	w.tickSoon(n, 0)
}

func (w *world) holderView(n *simNode) HolderView {
	return HolderView{View: n.state.view, SelfGPU: n.gpu, Voters: simVoters, Params: n.state.params, Stopping: n.stopping}
}

// tick is the runner's tick: the voter learns the view and the drift, the
// holder decides, the runner acts.
func (w *world) tick(n *simNode) {
	hv := w.holderView(n)
	w.readClock(n, func(now Time) { w.tickAt(n, hv, now) })
}

// readClock reads n's clock and runs f with the reading; a pause may fall
// in between, and then f runs when n resumes, with the reading from before.
func (w *world) readClock(n *simNode, f func(now Time)) {
	now := n.clock(w.now)
	if w.faulting() && w.rng.Float64() < w.net.midPause {
		w.pause(n, w.pauseLen(), "after reading the clock")
		n.cont = append(n.cont, func() { f(now) })
		return
	}
	f(now)
}

func (w *world) tickAt(n *simNode, hv HolderView, now Time) {
	n.voter.Observe(now, hv.View)
	n.voter.SetDrift(hv.Params.Drift)
	if n.holder == nil {
		return
	}
	out := n.holder.Tick(now, hv)
	if out.Next > 0 {
		w.schedTick(n, out.Next)
	}
	if w.traceN > 0 && (out.SetFence || len(out.Send) > 0) {
		w.tracef("%s tick at %v: view %s@%d stopping=%v fence=%v(set %v) send %d", n.name, now, hv.Active, hv.Epoch, hv.Stopping, out.Deadline, out.SetFence, len(out.Send))
	}
	pauseAfter := n.pauseAfterSend
	if pauseAfter > 0 && len(out.Send) > 0 && !out.Send[0].Req.Release && (!n.pauseWhenHeld || n.fenceOpen(w.now)) {
		n.pauseAfterSend, n.pauseWhenHeld = 0, false
	} else {
		pauseAfter = 0
	}
	w.exec(n, out)
	if pauseAfter > 0 {
		w.pause(n, pauseAfter, "right after sending a round")
	}
}

// schedTick arranges the next tick at n's clock reading next.
func (w *world) schedTick(n *simNode, next Time) {
	w.tickSoon(n, n.realAt(next)-w.now)
}

func (w *world) tickSoon(n *simNode, d int64) {
	n.tickGen++
	g := n.tickGen
	w.at(d, n.idx, n.inc, "tick", func() {
		if n.tickGen == g {
			w.tick(n)
		}
	})
}

// exec carries out a holder's output in the runner's order: fence, address,
// sends.
func (w *world) exec(n *simNode, out Output) {
	var steps []func()
	if out.SetFence {
		d := out.Deadline
		steps = append(steps, func() {
			n.fence = d
			w.fenceWritten(n)
			if n.isolateAfter > 0 && n.holder.round != nil && n.holder.round.dur == n.isolateAfter {
				n.isolateAfter = 0
				w.isolate(n)
			}
			if w.traceN > 0 {
				w.tracef("%s fence := %v (clock %v, open %v)", n.name, d, n.clock(w.now), n.fenceOpen(w.now))
			}
		})
	}
	if out.Hold || out.Remove {
		hold := out.Hold
		steps = append(steps, func() { n.hold = hold })
	}
	for _, e := range out.Send {
		steps = append(steps, func() { w.sendRequest(n, e) })
	}
	w.steps(n, steps)
}

// steps runs a step's actions; a pause may fall between two of them, and
// then the rest runs when the node resumes.
func (w *world) steps(n *simNode, list []func()) {
	k := len(list)
	if w.faulting() && len(list) > 0 && w.rng.Float64() < w.net.midPause {
		k = w.rng.IntN(len(list))
	}
	for i, f := range list {
		if !n.up {
			return
		}
		if i == k && !n.paused {
			w.pause(n, w.pauseLen(), "inside a step")
		}
		if n.paused {
			n.cont = append(n.cont, list[i:]...)
			return
		}
		f()
		w.check()
	}
}

// fenceWritten keeps the statistics of hand-offs between the two nodes.
func (w *world) fenceWritten(n *simNode) {
	if !n.fenceOpen(w.now) {
		n.openUntil = min(n.openUntil, w.now)
		return
	}
	wasOpen := n.openUntil > w.now
	n.openUntil = n.realAt(n.fence)
	if wasOpen || n.idx == w.lastHolder {
		w.lastHolder = n.idx
		return
	}
	if w.lastHolder >= 0 {
		w.res.handoffs++
		gap := time.Duration(w.now - w.nodes[w.lastHolder].openUntil)
		w.res.minGap = min(w.res.minGap, gap)
	}
	w.lastHolder = n.idx
}

func (w *world) sendRequest(n *simNode, e Envelope) {
	to := slices.Index(simNames[:], e.To)
	if to == n.idx {
		// The runner asks its own voter directly and takes the answer at
		// once.
		if a, ok := w.voterHandle(n, e.Req); ok {
			w.holderAnswer(n, a)
		}
		return
	}
	req := e.Req
	if req.Release && n.slowReleases {
		// The runner gave up on it, but the request still gets there.
		w.at(int64(50*time.Millisecond)+w.rng.Int64N(int64(600*time.Millisecond)), to, -1, "release (late)", func() { w.voterHandle(w.nodes[to], req) })
		return
	}
	w.send(n.idx, to, "request", func(v *simNode) { w.readClock(v, func(now Time) { w.remoteVoter(v, n, req, now) }) })
}

// remoteVoter is a voter's handler of a request from another node.
func (w *world) remoteVoter(v, n *simNode, req Request, now Time) {
	a, ok := w.voterHandleAt(v, req, now)
	if !ok {
		return
	}
	w.steps(v, []func(){func() {
		w.send(v.idx, n.idx, "answer", func(h *simNode) {
			w.readClock(h, func(now Time) { w.holderAnswerAt(h, a, now) })
		})
		switch {
		case a.Granted && v.crashAfterGrant:
			v.crashAfterGrant = false
			w.crash(v, false, int64(time.Millisecond)+w.rng.Int64N(int64(300*time.Millisecond)), "right after granting")
		case a.Granted && w.faulting() && w.rng.Float64() < w.net.restartAfterGrant:
			w.crash(v, false, int64(time.Millisecond)+w.rng.Int64N(int64(100*time.Millisecond)), "right after granting")
		}
	}})
}

func (w *world) voterHandle(v *simNode, req Request) (Answer, bool) {
	return w.voterHandleAt(v, req, v.clock(w.now))
}

func (w *world) voterHandleAt(v *simNode, req Request, now Time) (Answer, bool) {
	a, ok := v.voter.Handle(now, v.state.view, req)
	if w.traceN > 0 {
		if req.Release {
			w.tracef("%s voter: release from %s epoch %d", v.name, req.From, req.Epoch)
		} else {
			w.tracef("%s voter at %v: %s epoch %d nonce %x L=%v: granted=%v %s", v.name, now, req.From, req.Epoch, req.Nonce, req.Duration, a.Granted, a.Reason)
		}
	}
	return a, ok
}

func (w *world) holderAnswer(n *simNode, a Answer) { w.holderAnswerAt(n, a, n.clock(w.now)) }

func (w *world) holderAnswerAt(n *simNode, a Answer, now Time) {
	if n.holder == nil {
		return
	}
	out := n.holder.Answer(now, a, simVoters)
	if w.traceN > 0 {
		w.tracef("%s holder at %v: answer of %s epoch %d nonce %x granted=%v -> fence %v (set %v)", n.name, now, a.Voter, a.Epoch, a.Nonce, a.Granted, out.Deadline, out.SetFence)
	}
	w.exec(n, out)
}

// ---- network ----

func (w *world) delay() int64 {
	d := int64(50*time.Microsecond) + w.rng.Int64N(w.net.base)
	switch r := w.rng.Float64(); {
	case r < w.net.verySlow:
		d += w.rng.Int64N(int64(3 * time.Second))
	case r < w.net.verySlow+w.net.slow:
		d += w.rng.Int64N(int64(200 * time.Millisecond))
	}
	return d
}

// send carries a message from one node to another: checked against the
// links when sent, then lost, duplicated and delayed at random.
func (w *world) send(from, to int, what string, deliver func(*simNode)) {
	if !w.link[from][to] || w.rng.Float64() < w.net.loss {
		return
	}
	copies := 1
	if w.rng.Float64() < w.net.dup {
		copies += 1 + w.rng.IntN(2)
	}
	dst := w.nodes[to]
	for range copies {
		w.at(w.delay(), to, -1, what, func() { deliver(dst) })
	}
}

func (w *world) conn(a, b int) bool { return w.link[a][b] && w.link[b][a] }

// ---- pauses, crashes, restarts ----

func (w *world) pauseLen() int64 {
	switch r := w.rng.Float64(); {
	case r < 0.5:
		return int64(time.Millisecond) + w.rng.Int64N(int64(500*time.Millisecond))
	case r < 0.9:
		return int64(time.Second) + w.rng.Int64N(int64(4*time.Second))
	}
	return int64(5*time.Second) + w.rng.Int64N(int64(5*time.Second))
}

func (w *world) pause(n *simNode, d int64, why string) {
	if n.paused || !n.up {
		return
	}
	n.paused = true
	n.pauseGen++
	g := n.pauseGen
	w.tracef("%s paused for %v (%s)", n.name, time.Duration(d), why)
	w.at(d, -1, -1, "resume", func() {
		if n.up && n.paused && n.pauseGen == g {
			w.resume(n)
		}
	})
}

// resume runs what the pause interrupted, then what arrived meanwhile, in
// order, then a tick (its timer has fired).
func (w *world) resume(n *simNode) {
	w.tracef("%s resumes (%d queued)", n.name, len(n.deferred))
	n.paused = false
	n.pauseGen++
	cont := n.cont
	n.cont = nil
	w.steps(n, cont)
	deferred := n.deferred
	n.deferred = nil
	for _, ev := range deferred {
		w.dispatch(ev)
	}
	if n.up {
		w.tickSoon(n, 0)
	}
}

func (w *world) crash(n *simNode, wiped bool, down int64, why string) {
	if !n.up {
		return
	}
	w.tracef("%s crashes (wiped=%v, down %v, %s)", n.name, wiped, time.Duration(down), why)
	n.up, n.paused, n.cont, n.deferred = false, false, nil, nil
	n.inc++
	if w.leader == n.idx {
		// Its term ends with it; the others elect after the timeout.
		w.leaderLost()
	}
	if wiped {
		n.log, n.applied, n.eligible = nil, 0, false
		n.state = simState{params: DefaultParams()}
		w.historyKept()
	}
	n.restarts++
	r := n.restarts
	w.at(down, -1, -1, "restart", func() {
		if !n.up && n.restarts == r {
			w.restart(n)
		}
	})
}

func (w *world) restart(n *simNode) {
	n.up = true
	n.inc++
	w.tracef("%s restarts (applied %d of %d)", n.name, n.applied, len(w.committed))
	w.startAgent(n)
}

// stop is SIGTERM of the agent (systemctl restart): the active node first
// asks for a planned failover and waits a little for it (it may not come:
// the standby is unhealthy, the leader unreachable), then it releases
// (Stopping) and exits once the releases are sent.
func (w *world) stop(n *simNode, down int64) {
	if !n.up || n.paused {
		return
	}
	w.tracef("%s stops", n.name)
	handover := int64(0)
	if n.gpu && n.state.view.Active == n.name && w.rng.IntN(2) == 0 {
		w.operator(simEntry{kind: simMove, reason: "manual:stop"})
		handover = w.rng.Int64N(int64(500 * time.Millisecond))
	}
	inc := n.inc
	w.later(handover, n.idx, inc, "stop", func() {
		n.stopping = true
		w.tick(n)
		w.later(int64(time.Millisecond)+w.rng.Int64N(int64(50*time.Millisecond)), n.idx, inc, "exit", func() {
			w.crash(n, false, down, "stopped")
		})
	})
}

// ---- Raft ----

func (w *world) raftOK(n *simNode) bool { return n.up && !n.paused && n.eligible }

func (w *world) quorum(n *simNode) bool {
	c := 1
	for _, m := range w.nodes {
		if m != n && w.raftOK(m) && w.conn(n.idx, m.idx) {
			c++
		}
	}
	return c >= Majority(len(w.nodes))
}

func (w *world) leaderLost() {
	w.tracef("raft: %s is no longer leader", simNames[w.leader])
	w.leader, w.noLeaderSince, w.leaderBad = -1, w.now, -1
}

func (w *world) setLeader(n *simNode, why string) {
	w.leader = n.idx
	w.term++
	w.leaderBad = -1
	w.pending = false
	w.tracef("raft: %s leads (term %d, %s)", n.name, w.term, why)
}

// raftTick: the leader steps down when it has lost its quorum for the
// election timeout; without a leader, an up-to-date node with a quorum is
// elected after the timeout; the leader replicates to its connected
// followers, which store and apply after a delay.
func (w *world) raftTick() {
	w.at(int64(50*time.Millisecond), -1, -1, "raft", w.raftTick)
	if w.leader >= 0 {
		l := w.nodes[w.leader]
		switch {
		case w.raftOK(l) && w.quorum(l):
			w.leaderBad = -1
		case w.leaderBad < 0:
			w.leaderBad = w.now
		case w.now-w.leaderBad >= w.electTimeout:
			w.leaderLost()
		}
	}
	if w.leader < 0 && w.now-w.noLeaderSince >= w.electTimeout {
		var cands []*simNode
		for _, n := range w.nodes {
			if w.raftOK(n) && len(n.log) == len(w.committed) && w.quorum(n) {
				cands = append(cands, n)
			}
		}
		if len(cands) > 0 {
			w.setLeader(cands[w.rng.IntN(len(cands))], "election")
		}
	}
	if w.leader < 0 {
		return
	}
	l := w.nodes[w.leader]
	if !w.raftOK(l) {
		return
	}
	k := len(w.committed)
	for _, n := range w.nodes {
		if !n.up || (n != l && !w.conn(l.idx, n.idx)) || (len(n.log) == k && n.applied == k) {
			continue
		}
		// A new leader applies what it stores too (after its first commit).
		d := int64(100*time.Microsecond) + w.rng.Int64N(int64(20*time.Millisecond))
		if w.faulting() && w.rng.IntN(10) == 0 {
			d += w.rng.Int64N(int64(300 * time.Millisecond))
		}
		w.at(d, n.idx, n.inc, "replicate", func() { w.catchUp(n, k) })
	}
}

// catchUp stores the committed log up to k on n and applies it.
func (w *world) catchUp(n *simNode, k int) {
	if len(n.log) < k {
		n.log = append(n.log, w.committed[len(n.log):k]...)
	}
	if !n.eligible && len(n.log) == len(w.committed) {
		n.eligible = true
	}
	changed := false
	for n.applied < min(k, len(n.log)) {
		w.applyEntry(n, n.log[n.applied])
		n.applied++
		changed = true
	}
	w.checkLog(n)
	if changed {
		// The runner ticks on every change of the applied state.
		w.tickSoon(n, w.rng.Int64N(int64(500*time.Microsecond)))
	}
}

func (w *world) applyEntry(n *simNode, e simEntry) {
	switch e.kind {
	case simMove:
		if e.epoch <= n.state.view.Epoch {
			w.failf("%s applies epoch %d after epoch %d", n.name, e.epoch, n.state.view.Epoch)
		}
		n.state.view = View{Active: e.to, Epoch: e.epoch, ActiveIsGPU: slices.Contains(simGPU, e.to)}
		n.state.since, n.state.reason = e.wall, e.reason
	case simSettings:
		n.state.params = e.params
	case simMaint:
		n.state.maint = e.maint
	}
	w.tracef("%s applies %v", n.name, e)
}

// propose has the leader commit e after a delay, if it still leads with a
// quorum then and the replicated state machine accepts it.
func (w *world) propose(l *simNode, e simEntry) {
	if w.pending || w.leader != l.idx {
		return
	}
	w.pending = true
	term := w.term
	w.at(int64(500*time.Microsecond)+w.rng.Int64N(int64(20*time.Millisecond)), -1, -1, "commit", func() {
		if w.term == term {
			w.pending = false
		}
		if w.leader != l.idx || w.term != term || !w.raftOK(l) || !w.quorum(l) {
			w.tracef("raft: %s could not commit %v", l.name, e)
			return
		}
		switch e.kind {
		case simMove:
			if e.epoch != w.lastEpoch+1 || !slices.Contains(simGPU, e.to) {
				return // the state machine refuses it
			}
			w.lastEpoch = e.epoch
		case simSettings:
			if err := e.params.Validate(); err != nil {
				w.tracef("raft: refused %v: %v", e, err)
				return
			}
			w.maxLease = max(w.maxLease, e.params.Duration+e.params.Drift)
		}
		if len(l.log) != len(w.committed) {
			w.failf("leader %s stores %d entries, %d committed", l.name, len(l.log), len(w.committed))
			return
		}
		w.committed = append(w.committed, e)
		w.tracef("raft: committed #%d %v", len(w.committed), e)
		// Stored on the leader and on one connected follower: a majority.
		var fs []*simNode
		for _, n := range w.nodes {
			if n != l && w.raftOK(n) && w.conn(l.idx, n.idx) {
				fs = append(fs, n)
			}
		}
		f := fs[w.rng.IntN(len(fs))]
		f.log = append(f.log, w.committed[len(f.log):]...)
		w.checkLog(f)
		w.catchUp(l, len(w.committed))
	})
}

// ---- the leader's controller ----

func (w *world) decideTick() {
	w.at(int64(100*time.Millisecond), -1, -1, "decide", w.decideTick)
	if w.leader < 0 {
		return
	}
	l := w.nodes[w.leader]
	w.at(0, l.idx, l.inc, "decide", func() { w.decide(l) })
}

func (w *world) decide(l *simNode) {
	if w.leader != l.idx || l.applied != len(l.log) {
		return
	}
	now := l.clock(w.now)
	// Ask the others for reports; what comes back is used next time.
	for _, v := range w.nodes {
		if v == l {
			continue
		}
		w.send(l.idx, v.idx, "report?", func(v *simNode) {
			r := v.voter.Report(v.clock(w.now), v.state.view)
			w.send(v.idx, l.idx, "report", func(l *simNode) { l.reports[v.idx] = simReport{r: r, at: l.clock(w.now), ok: true} })
		})
	}
	st := l.state
	reports := []Report{l.voter.Report(now, st.view)}
	for i, r := range l.reports {
		if i != l.idx && r.ok && now-r.at < 400*time.Millisecond {
			reports = append(reports, r.r)
		}
	}
	health := map[string]NodeHealth{}
	for _, g := range w.nodes[:2] {
		if g.up && (g == l || w.conn(l.idx, g.idx)) {
			health[g.name] = NodeHealth{Known: true, Healthy: g.healthy, Reason: map[bool]string{false: "http"}[g.healthy]}
		}
	}
	s := Situation{
		Now: time.Unix(0, w.now+l.wallOff), Active: st.view.Active, Epoch: st.view.Epoch, Since: time.Unix(0, st.since), Reason: st.reason,
		Maintenance: st.maint, GPUNodes: simGPU, Health: health, Voters: len(w.nodes), Reports: reports,
		Lease: st.params.Duration, HoldDown: w.holdDown, Preferred: w.preferred, Preempt: w.preempt, Self: l.name,
	}
	d := Decide(s)
	if d.Move != nil {
		w.tracef("%s decides: %+v", l.name, *d.Move)
		w.propose(l, simEntry{kind: simMove, to: d.Move.To, epoch: d.Move.Epoch, reason: d.Move.Reason, wall: w.now + l.wallOff})
	}
}

// operator sends a command to the leader's API (through any agent).
func (w *world) operator(e simEntry) {
	if w.leader < 0 {
		return
	}
	l := w.nodes[w.leader]
	healed := w.healed
	w.at(0, l.idx, l.inc, "operator", func() {
		if l.applied != len(l.log) || healed != w.healed {
			return
		}
		e := e
		e.wall = w.now + l.wallOff
		if e.kind == simMove {
			cur := l.state.view
			if cur.Active == "" {
				return
			}
			e.to = simGPU[1-slices.Index(simGPU, cur.Active)]
			e.epoch = cur.Epoch + 1
		}
		w.tracef("operator: %v", e)
		w.propose(l, e)
	})
}

func (w *world) randomParams() Params {
	r := w.rng
	var l time.Duration
	switch r.IntN(10) {
	case 0:
		l = time.Second + time.Duration(r.Int64N(int64(MaxDuration-time.Second)))
	case 1, 2:
		l = 50*time.Millisecond + time.Duration(r.Int64N(int64(150*time.Millisecond)))
	default:
		l = 200*time.Millisecond + time.Duration(r.Int64N(int64(800*time.Millisecond)))
	}
	p := Params{Duration: l}
	p.Drift = min((l+19)/20+time.Duration(r.Int64N(int64(l/5))), MaxDrift)
	p.Renew = l / 3
	if r.IntN(4) == 0 {
		p.Renew = 5*time.Millisecond + time.Duration(r.Int64N(int64(l/3-5*time.Millisecond)))
	}
	p.Retry = time.Millisecond + time.Duration(r.Int64N(int64(p.Renew-time.Millisecond)))
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// ---- faults ----

// The kinds of fault; each seed draws its own mix of them.
const (
	fPartition = iota
	fHealLinks
	fOneWay
	fCrash
	fStop
	fPause
	fPauseInFlight
	fCrashAfterGrant
	fHealth
	fMaintenance
	fFailover
	fSettings
	fTransfer
	fNetwork
	fDrill
	fQuickRestart
	fSettingsRace
	fKinds
)

// drawFaults gives each kind of fault a weight for this seed: some seeds
// crash a lot, some only partition, some only pause.
func (w *world) drawFaults() {
	r := w.rng
	sum := 0.0
	for i := range w.faultWeight {
		if r.IntN(4) > 0 {
			w.faultWeight[i] = r.Float64()
		}
		sum += w.faultWeight[i]
	}
	if sum == 0 {
		w.faultWeight[fFailover] = 1
	}
	// Half the seeds focus on one of the hard hand-offs: half their
	// faults are that one.
	if r.IntN(2) == 0 {
		focus := []int{fDrill, fQuickRestart, fSettingsRace, fPauseInFlight, fCrashAfterGrant}
		w.faultWeight[focus[r.IntN(len(focus))]] += max(sum, 1)
	}
}

func (w *world) fault() {
	if w.healed {
		return
	}
	w.at(int64(time.Millisecond)+w.rng.Int64N(2*w.faultMean), -1, -1, "fault", w.fault)
	r := w.rng
	n := w.nodes[r.IntN(3)]
	sum := 0.0
	for _, x := range w.faultWeight {
		sum += x
	}
	k, x := 0, r.Float64()*sum
	for k = 0; k < fKinds-1 && x >= w.faultWeight[k]; k++ {
		x -= w.faultWeight[k]
	}
	switch k {
	case fPartition: // any shape
		for i := range 3 {
			for j := i + 1; j < 3; j++ {
				cut := r.IntN(2) == 0
				w.link[i][j], w.link[j][i] = !cut, !cut
			}
		}
		w.tracef("fault: links %v", w.link)
	case fHealLinks:
		for i := range 3 {
			for j := range 3 {
				w.link[i][j] = true
			}
		}
		w.tracef("fault: network healed")
	case fOneWay:
		i, j := r.IntN(3), r.IntN(3)
		if i != j {
			w.link[i][j] = false
			w.tracef("fault: %s -> %s drops", simNames[i], simNames[j])
		}
	case fCrash:
		wiped := r.IntN(4) == 0
		if wiped {
			for _, m := range w.nodes {
				if m != n && (!m.eligible || m.log == nil && len(w.committed) > 0) {
					wiped = false // never two nodes without their data
				}
			}
		}
		w.crash(n, wiped, int64(10*time.Millisecond)+r.Int64N(int64(8*time.Second)), "fault")
	case fStop:
		w.stop(n, int64(10*time.Millisecond)+r.Int64N(int64(3*time.Second)))
	case fQuickRestart: // the holder's agent restarts at once, its releases late, then a move
		for _, m := range w.nodes[:2] {
			if m.fenceOpen(w.now) {
				m.slowReleases = r.IntN(2) == 0
				down := int64(10*time.Millisecond) + r.Int64N(int64(300*time.Millisecond))
				w.stop(m, down)
				// The restarted agent holds again, then pauses with a
				// round in flight while its old releases arrive.
				m.pauseAfterSend, m.pauseWhenHeld = int64(500*time.Millisecond)+r.Int64N(int64(3*time.Second)), true
				w.later(down+r.Int64N(int64(1500*time.Millisecond)), -1, -1, "failover", func() {
					w.operator(simEntry{kind: simMove, reason: "manual:failover"})
				})
			}
		}
	case fPause:
		w.pause(n, w.pauseLen(), "fault")
	case fPauseInFlight: // the holder pauses with its answers in flight
		for _, m := range w.nodes[:2] {
			if m.holderEpoch() != 0 {
				m.pauseAfterSend = int64(100*time.Millisecond) + r.Int64N(int64(5*time.Second))
			}
		}
	case fCrashAfterGrant:
		n.crashAfterGrant = true
	case fHealth:
		g := w.nodes[r.IntN(2)]
		g.healthy = !g.healthy
		w.tracef("fault: %s healthy=%v", g.name, g.healthy)
	case fMaintenance:
		w.operator(simEntry{kind: simMaint, maint: r.IntN(2) == 0})
	case fFailover:
		w.operator(simEntry{kind: simMove, reason: "manual:failover"})
	case fSettings:
		w.operator(simEntry{kind: simSettings, params: w.randomParams()})
	case fTransfer:
		if w.leader >= 0 && w.raftOK(w.nodes[w.leader]) && w.raftOK(n) && n.idx != w.leader && len(n.log) == len(w.committed) && w.conn(w.leader, n.idx) {
			w.setLeader(n, "transfer")
		}
	case fNetwork:
		w.netFaulty()
	case fDrill:
		w.drill()
	case fSettingsRace:
		w.settingsRace()
	}
}

// settingsRace lengthens the lease while the holder leads, and cuts the
// holder off right after: its last rounds ask the others for the new,
// longer lease before they have applied the new drift margin.
func (w *world) settingsRace() {
	r := w.rng
	var h *simNode
	for _, m := range w.nodes[:2] {
		if m.fenceOpen(w.now) {
			h = m
		}
	}
	if h == nil || w.leader < 0 {
		return
	}
	if w.leader != h.idx && w.raftOK(w.nodes[w.leader]) && w.raftOK(h) && len(h.log) == len(w.committed) && w.conn(w.leader, h.idx) {
		w.setLeader(h, "transfer (settings race)")
	}
	if w.leader != h.idx {
		return
	}
	if w.pending || !w.raftOK(h) {
		return
	}
	w.catchUp(h, len(w.committed))
	if cur := h.state.params; cur.Duration >= time.Second || cur.Drift > 30*time.Millisecond && r.IntN(2) == 0 {
		// First a short lease with the least margin, so the next race
		// starts from a small ε.
		l := 100*time.Millisecond + time.Duration(r.Int64N(int64(500*time.Millisecond)))
		p := Params{Duration: l, Drift: (l + 19) / 20, Renew: l / 4, Retry: l / 20}
		w.propose(h, simEntry{kind: simSettings, params: p, wall: w.now + h.wallOff})
		return
	}
	l := MaxDuration
	if r.IntN(2) == 0 {
		l = time.Second + time.Duration(r.Int64N(int64(MaxDuration-time.Second)))
	}
	p := Params{Duration: l, Drift: (l + 19) / 20, Renew: 5*time.Millisecond + time.Duration(r.Int64N(int64(l/20))), Retry: 5 * time.Millisecond}
	w.propose(h, simEntry{kind: simSettings, params: p, wall: w.now + h.wallOff})
	h.isolateAfter = l
	w.tracef("fault: settings race on %s", h.name)
}

func (w *world) isolate(n *simNode) {
	for i := range 3 {
		if i != n.idx {
			w.link[i][n.idx], w.link[n.idx][i] = false, false
		}
	}
	w.tracef("fault: %s isolated", n.name)
	// The operator moves the role away as soon as the others can commit.
	epoch := w.lastEpoch
	for i := range 10 {
		w.later(int64(i)*int64(200*time.Millisecond), -1, -1, "failover", func() {
			if w.lastEpoch == epoch && w.leader >= 0 && w.leader != n.idx {
				w.operator(simEntry{kind: simMove, reason: "manual:failover"})
			}
		})
	}
}

// drill is the hardest hand-off: the GPU nodes cut from each other, the
// standby leading, a planned failover while the holder still reaches the
// witness; sometimes the witness restarts right after a grant, a pause
// catches the holder with answers in flight, or the timings change.
func (w *world) drill() {
	r := w.rng
	var h *simNode
	for _, m := range w.nodes[:2] {
		if m.fenceOpen(w.now) {
			h = m
		}
	}
	if h == nil {
		return
	}
	o := w.nodes[1-h.idx]
	w.link[0][1], w.link[1][0] = false, false
	wit := w.nodes[2]
	w.tracef("fault: drill, %s holds, cut from %s", h.name, o.name)
	if w.leader >= 0 && w.leader != o.idx && w.raftOK(o) && len(o.log) == len(w.committed) && w.conn(w.leader, o.idx) {
		w.setLeader(o, "transfer (drill)")
	}
	if r.IntN(2) == 0 {
		wit.crashAfterGrant = true
	}
	if r.IntN(3) == 0 {
		h.pauseAfterSend = int64(100*time.Millisecond) + r.Int64N(int64(3*time.Second))
	}
	if r.IntN(4) == 0 {
		w.operator(simEntry{kind: simSettings, params: w.randomParams()})
	}
	w.later(r.Int64N(int64(300*time.Millisecond)), -1, -1, "drill failover", func() {
		w.operator(simEntry{kind: simMove, reason: "manual:failover"})
	})
}

// heal ends the faults: every link up, a clean network, every node up,
// resumed and healthy, maintenance off. From here a healthy GPU node must
// hold the VIP within the bound.
func (w *world) heal() {
	w.healed = true
	w.healAt = w.now
	w.tracef("heal")
	w.net = simNet{base: int64(2 * time.Millisecond)}
	for i := range 3 {
		for j := range 3 {
			w.link[i][j] = true
		}
	}
	for _, n := range w.nodes {
		n.pauseAfterSend, n.pauseWhenHeld, n.crashAfterGrant, n.healthy, n.isolateAfter = 0, false, false, true, 0
		if n.up && n.stopping {
			w.crash(n, false, 0, "stopped") // the agent was exiting
		}
		if !n.up {
			n.restarts++
			w.restart(n)
		}
		if n.paused {
			w.resume(n)
		}
	}
	// The liveness bound: the quarantine of a voter restarted at the heal,
	// or an election (the controller decides only with a leader) and the
	// grants of the last holder running out (L+ε); then perhaps one more
	// move (a preemption after the hold-down, or a holder-lost decided on
	// reports from before the heal) and the grants of the holder before it
	// running out; and half a second for rounds, commits and replication.
	w.bound = max(int64(Quarantine), w.electTimeout+int64(w.maxLease)) + int64(w.maxLease) + int64(500*time.Millisecond)
	if w.preempt {
		w.bound += int64(w.holdDown)
	}
	w.end = w.now + w.bound + int64(simHeldFor)
	w.at(0, -1, -1, "maintenance off", w.maintOff)
}

func (w *world) maintOff() {
	if w.leader >= 0 && w.nodes[w.leader].state.maint {
		w.operator(simEntry{kind: simMaint, maint: false})
	}
	w.at(int64(200*time.Millisecond), -1, -1, "maintenance off", w.maintOff)
}

func (w *world) checkLiveness() {
	w.historyKept()
	for _, n := range w.nodes {
		w.checkLog(n)
	}
	if w.res.fail != "" {
		return
	}
	if w.holdSince < 0 {
		var s []string
		for _, n := range w.nodes {
			s = append(s, fmt.Sprintf("%s: applied %s@%d maint=%v holder epoch %d fence open %v", n.name, n.state.view.Active, n.state.view.Epoch, n.state.maint, n.holderEpoch(), n.fenceOpen(w.now)))
		}
		w.failf("liveness: %v after the heal no healthy GPU node holds the VIP (leader %d; %s)", time.Duration(w.now-w.healAt), w.leader, strings.Join(s, "; "))
		return
	}
	w.res.recovery = time.Duration(w.holdSince - w.healAt)
	if w.holdSince > w.healAt+w.bound {
		w.failf("liveness: the VIP is held without a gap only since %v after the heal, bound %v", w.res.recovery, time.Duration(w.bound))
	}
}

// runSim plays one seed.
func runSim(seed uint64, bugs Bugs, traceN int) simResult {
	return newWorld(seed, bugs, traceN).run()
}
