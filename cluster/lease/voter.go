package lease

import (
	"fmt"
	"time"
)

// Grant is the lease a voter last granted.
type Grant struct {
	// Node is the holder it was granted to.
	Node string
	// Epoch is the epoch it was granted for.
	Epoch uint64
	// Nonce is the round it was last granted for; a release must name it.
	Nonce uint64
	// Expires is when the voter stops counting it live, on its own clock.
	Expires Time
}

// Voter is one voter's side of the lease: it remembers, in memory only, the
// grant it gave last, and decides each request by the rule in the package
// doc. It is not safe for concurrent use; the runner serialises calls.
type Voter struct {
	name  string
	drift time.Duration
	// grantsFrom is when this voter may grant again after it started.
	grantsFrom Time
	grant      Grant

	// seen tracks, for the assignment of the current view, when this
	// voter last heard from the node named active, so the controller can
	// tell a lost holder from a quiet one.
	view      View
	viewSince Time
	heard     Time

	plant Bugs
}

// Bugs plants known ways to get the lease wrong, for the simulation to show
// that it catches each one. The zero value plants nothing; nothing outside
// this package's tests sets it.
type Bugs struct {
	// IgnoreLiveGrant has a voter grant although another node's grant is
	// still live.
	IgnoreLiveGrant bool
	// NoQuarantine has a restarted voter grant at once.
	NoQuarantine bool
	// AnchorAtAnswer has the holder anchor its deadline at the moment the
	// majority was reached instead of t_s.
	AnchorAtAnswer bool
	// CountOldNonce has the holder count answers of earlier rounds.
	CountOldNonce bool
}

// NewVoter returns the voter of node name, started at now. It grants
// nothing until the quarantine has passed; drift is its margin ε (at most
// MaxDrift).
func NewVoter(name string, now Time, drift time.Duration) *Voter {
	if drift > MaxDrift {
		drift = MaxDrift
	}
	return &Voter{name: name, drift: drift, grantsFrom: now + Quarantine, viewSince: now}
}

// SetDrift changes ε for grants given from now on.
func (v *Voter) SetDrift(d time.Duration) {
	if d > MaxDrift {
		d = MaxDrift
	}
	v.drift = d
}

// observe records a change of the applied view.
func (v *Voter) observe(now Time, view View) {
	if view.Active != v.view.Active || view.Epoch != v.view.Epoch {
		v.view, v.viewSince, v.heard = view, now, 0
	}
}

// Observe tells the voter the applied view at now (the runner calls it
// whenever the replicated state changes).
func (v *Voter) Observe(now Time, view View) { v.observe(now, view) }

// Handle decides one request at now, with the view of the voter's applied
// state, and returns the answer (a release gets none: ok is false).
func (v *Voter) Handle(now Time, view View, r Request) (a Answer, ok bool) {
	v.observe(now, view)
	if r.From == view.Active && r.Epoch == view.Epoch {
		v.heard = now
	}
	if r.Release {
		// Only a release that names the granted round drops the grant: a
		// late release of an earlier run of the holder must not drop the
		// grant to the run that holds now.
		if v.grant.Node == r.From && v.grant.Epoch <= r.Epoch && v.grant.Nonce == r.Nonce {
			v.grant = Grant{}
		}
		return Answer{}, false
	}
	a = Answer{Voter: v.name, To: r.From, Epoch: r.Epoch, Nonce: r.Nonce}
	if err := r.Validate(); err != nil {
		a.Reason = err.Error()
		return a, true
	}
	switch live := v.grant.Node != "" && now < v.grant.Expires; {
	case now < v.grantsFrom && !v.plant.NoQuarantine:
		a.Reason = fmt.Sprintf("%s restarted: grants nothing for %v more", v.name, v.grantsFrom-now)
	case view.Active != r.From || view.Epoch != r.Epoch:
		a.Reason = fmt.Sprintf("%s's applied state names %q active at epoch %d", v.name, view.Active, view.Epoch)
	case !view.ActiveIsGPU:
		a.Reason = fmt.Sprintf("%q is not a GPU node", r.From)
	case live && v.grant.Node != r.From && !v.plant.IgnoreLiveGrant:
		a.Reason = fmt.Sprintf("%s's grant to %s (epoch %d) is live for %v more", v.name, v.grant.Node, v.grant.Epoch, v.grant.Expires-now)
	default:
		// The margin is never below 5 % of the lease asked for (the least
		// Params.Validate allows), whatever drift this voter has applied:
		// in a settings change the holder may ask for the new, longer L
		// while this voter still has the old, smaller ε.
		exp := now + r.Duration + max(v.drift, (r.Duration+19)/20)
		if live && v.grant.Node == r.From && v.grant.Expires > exp {
			// Never shorten a grant the holder may still count on (its
			// earlier round asked for a longer lease).
			exp = v.grant.Expires
		}
		v.grant = Grant{Node: r.From, Epoch: r.Epoch, Nonce: r.Nonce, Expires: exp}
		a.Granted = true
	}
	return a, true
}

// Live returns the grant that may still be live at now, if any.
func (v *Voter) Live(now Time) (Grant, bool) {
	if v.grant.Node == "" || now >= v.grant.Expires {
		return Grant{}, false
	}
	return v.grant, true
}

// Report is what a voter tells the controller.
type Report struct {
	// Voter is the reporting voter.
	Voter string `json:"voter"`
	// Active and Epoch are its applied view.
	Active string `json:"active"`
	Epoch  uint64 `json:"epoch"`
	// Silent is how long the voter has heard no request from Active for
	// Epoch (since it applied that assignment, if never).
	Silent time.Duration `json:"silent"`
	// GrantTo and GrantLeft describe its live grant, if any.
	GrantTo    string        `json:"grant_to,omitempty"`
	GrantEpoch uint64        `json:"grant_epoch,omitempty"`
	GrantLeft  time.Duration `json:"grant_left,omitempty"`
	// Quarantine is how long it grants nothing yet (after a restart).
	Quarantine time.Duration `json:"quarantine,omitempty"`
}

// Report describes the voter at now.
func (v *Voter) Report(now Time, view View) Report {
	v.observe(now, view)
	since := v.viewSince
	if v.heard > since {
		since = v.heard
	}
	r := Report{Voter: v.name, Active: v.view.Active, Epoch: v.view.Epoch, Silent: now - since}
	if g, ok := v.Live(now); ok {
		r.GrantTo, r.GrantEpoch, r.GrantLeft = g.Node, g.Epoch, g.Expires-now
	}
	if now < v.grantsFrom {
		r.Quarantine = v.grantsFrom - now
	}
	return r
}
