package lease

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reasons the controller gives for a move, as recorded in the history.
const (
	ReasonStartup    = "startup"
	ReasonHolderLost = "holder-lost"
	ReasonHealth     = "health"
	ReasonPreempt    = "preempt"
	// ReasonMemberRemoved: the active node is no longer a GPU member
	// (`newbieha remove`).
	ReasonMemberRemoved = "member-removed"
)

// NodeHealth is what the leader knows of one GPU node's health.
type NodeHealth struct {
	// Known is false when the node has not reported (down, or gossip has
	// not reached it yet).
	Known   bool
	Healthy bool
	// Reason names the failing check, when unhealthy.
	Reason string
}

// Situation is everything the controller decides from.
type Situation struct {
	// Now is the leader's wall clock, compared only with Since (stamped by
	// a leader's wall clock too) for the hold-down.
	Now time.Time
	// Active, Epoch, Since and Reason are the applied assignment.
	Active string
	Epoch  uint64
	Since  time.Time
	Reason string
	// Maintenance freezes every decision.
	Maintenance bool
	// GPUNodes are the GPU members, in a stable order.
	GPUNodes []string
	// Health is the health of each GPU node.
	Health map[string]NodeHealth
	// Voters is the number of voters in the configuration.
	Voters int
	// Reports are the voter reports the leader could gather (its own
	// included); an unreachable voter is simply missing.
	Reports []Report
	// Lease is the lease duration L: a holder that a majority of voters
	// has not heard from for L is lost.
	Lease time.Duration
	// HoldDown is how long after a move no health-driven move follows.
	HoldDown time.Duration
	// Preferred is the node chosen first when several could take the
	// role; with Preempt it also takes the role back once healthy.
	Preferred string
	Preempt   bool
	// Self is the deciding leader; without a preferred node, a healthy GPU
	// leader names itself first at startup.
	Self string
}

// Move is a change of the active role to commit.
type Move struct {
	To     string
	Epoch  uint64
	Reason string
}

// Decision is the controller's verdict: a move, or why the role stays.
type Decision struct {
	Move *Move
	// Blocked says why nothing moves although something is wrong ("" when
	// all is well).
	Blocked string
}

// HolderLost reports whether a majority of the voters reports that the
// active node has not been heard from for the current epoch for at least
// the lease duration.
func (s Situation) HolderLost() bool {
	n := 0
	for _, r := range s.Reports {
		if r.Active == s.Active && r.Epoch == s.Epoch && r.Silent >= s.Lease {
			n++
		}
	}
	return s.Voters > 0 && n >= Majority(s.Voters)
}

// movedHere says the current assignment came from a move (not the first
// assignment of the cluster), so the hold-down applies to it.
func (s Situation) movedHere() bool { return s.Reason != ReasonStartup && s.Reason != "" }

// healthy returns the healthy GPU nodes other than except, the preferred
// one first.
func (s Situation) healthy(except string) []string {
	var out []string
	for _, n := range s.GPUNodes {
		if n != except && s.Health[n].Known && s.Health[n].Healthy {
			out = append(out, n)
		}
	}
	if i := slices.Index(out, s.Preferred); i > 0 {
		out[0], out[i] = out[i], out[0]
	}
	return out
}

// Decide is the leader's controller: what, if anything, to commit now.
func Decide(s Situation) Decision {
	if s.Maintenance {
		return Decision{}
	}
	move := func(to, reason string) Decision {
		return Decision{Move: &Move{To: to, Epoch: s.Epoch + 1, Reason: reason}}
	}
	if s.Active == "" || !slices.Contains(s.GPUNodes, s.Active) {
		c := s.healthy("")
		if i := slices.Index(c, s.Self); i > 0 && (s.Preferred == "" || !slices.Contains(c, s.Preferred)) {
			c[0], c[i] = c[i], c[0]
		}
		if len(c) > 0 {
			reason := ReasonStartup
			if s.Active != "" {
				reason = ReasonMemberRemoved + ":" + s.Active
			}
			return move(c[0], reason)
		}
		return Decision{Blocked: "no GPU node is healthy to become active"}
	}
	others := s.healthy(s.Active)
	if s.HolderLost() {
		if len(others) > 0 {
			return move(others[0], ReasonHolderLost+":"+s.Active)
		}
		return Decision{Blocked: fmt.Sprintf("%s is not renewing its lease and no other GPU node is healthy: %s", s.Active, s.whyNot(s.Active))}
	}
	h := s.Health[s.Active]
	if h.Known && !h.Healthy {
		if left := s.holdDownLeft(); left > 0 {
			return Decision{Blocked: fmt.Sprintf("%s is unhealthy (%s) but the hold-down after the last move runs %v more", s.Active, h.Reason, left.Round(time.Second))}
		}
		if len(others) > 0 {
			return move(others[0], ReasonHealth+":"+s.Active+":"+h.Reason)
		}
		return Decision{Blocked: fmt.Sprintf("%s is unhealthy (%s) and no other GPU node can take over: %s", s.Active, h.Reason, s.whyNot(s.Active))}
	}
	if s.Preempt && s.Preferred != "" && s.Preferred != s.Active && slices.Contains(others, s.Preferred) && s.holdDownLeft() <= 0 {
		return move(s.Preferred, ReasonPreempt+":"+s.Preferred)
	}
	return Decision{}
}

func (s Situation) holdDownLeft() time.Duration {
	if !s.movedHere() {
		return 0
	}
	return s.HoldDown - s.Now.Sub(s.Since)
}

// whyNot lists why each GPU node but except cannot take over.
func (s Situation) whyNot(except string) string {
	var r []string
	for _, n := range s.GPUNodes {
		if n == except {
			continue
		}
		h := s.Health[n]
		switch {
		case !h.Known:
			r = append(r, n+" has not reported")
		case !h.Healthy:
			r = append(r, fmt.Sprintf("%s unhealthy (%s)", n, h.Reason))
		}
	}
	if len(r) == 0 {
		return "no other GPU node"
	}
	return strings.Join(r, "; ")
}
