package lease

import "slices"

// HolderView is what the holder's runner knows at a tick.
type HolderView struct {
	View
	// SelfGPU is true when this node is a GPU node (a witness never holds).
	SelfGPU bool
	// Voters names the voters of the current configuration, this node
	// included when it is one.
	Voters []string
	// Params are the lease timings of the applied settings.
	Params Params
	// Stopping says the agent is stopping: release and hold nothing.
	Stopping bool
}

// Envelope is a request addressed to one voter.
type Envelope struct {
	To  string
	Req Request
}

// Output is what the runner must do after a call, in this order: write the
// fence deadline, add or remove the address (announcing it when asked), then
// send the requests.
type Output struct {
	// SetFence asks for Deadline to be written to the fence. A deadline of
	// 0 closes it.
	SetFence bool
	Deadline Time
	// Hold asks for the address to be present (the fence is open until
	// Deadline); Announce asks for a burst of gratuitous ARP too.
	Hold     bool
	Announce bool
	// Remove asks for the address to be removed.
	Remove bool
	// Send are the requests to send.
	Send []Envelope
	// Next is when Tick is due again.
	Next Time
}

type round struct {
	nonce   uint64
	ts      Time
	dur     Time
	granted []string
	done    bool
}

// Holder is a GPU node's side of the lease: it runs lease rounds while the
// applied state names it active and decides its fence deadline. It is not
// safe for concurrent use.
type Holder struct {
	name  string
	nonce uint64 // the last nonce used; starts at a random value per process

	epoch     uint64 // the epoch we act for, 0 when not active
	deadline  Time   // the fence deadline written last (0: closed)
	present   bool   // we asked for the address and have not removed it
	announced uint64 // the epoch we last announced for
	round     *round
	// grantedBy is the last round each voter granted, as far as we know:
	// a release names it.
	grantedBy map[string]uint64

	plant Bugs
}

// NewHolder returns the holder of node name. nonceBase must differ between
// two runs of the same node (the runner draws it at random), so an answer to
// a round of an earlier run is never taken for one of this run.
func NewHolder(name string, nonceBase uint64) *Holder {
	return &Holder{name: name, nonce: nonceBase}
}

// Deadline is the fence deadline the holder last set (0: none).
func (h *Holder) Deadline() Time { return h.deadline }

// Epoch is the epoch the holder runs rounds for (0: not active).
func (h *Holder) Epoch() uint64 { return h.epoch }

// Tick advances the holder at now with the runner's view: it starts a round
// when one is due, releases when the view no longer names this node, and
// removes the address once the deadline has passed.
func (h *Holder) Tick(now Time, v HolderView) Output {
	var out Output
	if v.Active != h.name || !v.ActiveIsGPU || !v.SelfGPU || v.Stopping {
		if h.epoch != 0 || h.deadline != 0 || h.present {
			out.SetFence, out.Deadline, out.Remove = true, 0, true
			if h.epoch != 0 {
				for _, to := range v.Voters {
					out.Send = append(out.Send, Envelope{To: to, Req: Request{From: h.name, Epoch: h.epoch, Nonce: h.grantedBy[to], Release: true}})
				}
			}
		}
		h.epoch, h.deadline, h.present, h.announced, h.round = 0, 0, false, 0, nil
		out.Next = now + v.Params.Renew
		return out
	}
	if v.Epoch != h.epoch {
		h.epoch, h.round = v.Epoch, nil
	}
	holding := h.deadline > now
	if h.present && !holding {
		out.Remove, h.present = true, false
	}
	interval := v.Params.Retry
	if holding {
		interval = v.Params.Renew
	}
	if h.round == nil || now >= h.round.ts+interval {
		h.nonce++
		h.round = &round{nonce: h.nonce, ts: now, dur: v.Params.Duration}
		for _, to := range v.Voters {
			out.Send = append(out.Send, Envelope{To: to, Req: Request{From: h.name, Epoch: h.epoch, Nonce: h.nonce, Duration: v.Params.Duration}})
		}
	}
	out.Next = h.round.ts + interval
	if holding && h.deadline < out.Next {
		out.Next = h.deadline
	}
	return out
}

// Answer takes one voter's answer at now; voters is the current
// configuration (as in the view of the last Tick).
func (h *Holder) Answer(now Time, a Answer, voters []string) Output {
	var out Output
	r := h.round
	if r == nil || !a.Granted || a.To != h.name || a.Epoch != h.epoch || h.epoch == 0 || !slices.Contains(voters, a.Voter) {
		return out
	}
	if a.Nonce != r.nonce && !h.plant.CountOldNonce {
		return out
	}
	if a.Nonce == r.nonce {
		if h.grantedBy == nil {
			h.grantedBy = map[string]uint64{}
		}
		h.grantedBy[a.Voter] = a.Nonce
	}
	if slices.Contains(r.granted, a.Voter) {
		return out
	}
	r.granted = append(r.granted, a.Voter)
	if r.done || len(r.granted) < Majority(len(voters)) {
		return out
	}
	r.done = true
	d := r.ts + r.dur
	if h.plant.AnchorAtAnswer {
		d = now + r.dur
	}
	if d <= h.deadline || d <= now {
		return out
	}
	h.deadline = d
	out.SetFence, out.Deadline, out.Hold = true, d, true
	h.present = true
	if h.announced != h.epoch {
		out.Announce, h.announced = true, h.epoch
	}
	return out
}
