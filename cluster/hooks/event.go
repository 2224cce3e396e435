package hooks

import (
	"slices"
	"strconv"
	"time"
)

// The kinds of events. The node events run on the node where they happen;
// the cluster events run on the Raft leader.
const (
	// BecameHolder: this node was granted the lease for an epoch and holds
	// the VIP (Keepalived's notify_master).
	BecameHolder = "became-holder"
	// Released: this node stopped holding (it was named standby, its lease
	// ran out, or it is stopping).
	Released = "released"
	// BecameStandby: the replicated state names another node active
	// (Keepalived's notify_backup); on a GPU node only.
	BecameStandby = "became-standby"
	// HealthChanged: this node's health verdict flipped.
	HealthChanged = "health-changed"
	// ConflictSeen: an ARP probe found another host answering for the VIP.
	ConflictSeen = "conflict-seen"
	// DrillStarted and DrillEnded: a runbook drill run from this node
	// started or ended.
	DrillStarted = "drill-started"
	DrillEnded   = "drill-ended"

	// FailoverCommitted: a change of active node was committed (leader).
	FailoverCommitted = "failover-committed"
	// MemberJoined and MemberRemoved: a member record was added or
	// removed (leader).
	MemberJoined  = "member-joined"
	MemberRemoved = "member-removed"
	// MaintenanceOn and MaintenanceOff: maintenance mode changed (leader).
	MaintenanceOn  = "maintenance-on"
	MaintenanceOff = "maintenance-off"
)

// NodeKinds are the events that run on the node where they happen.
var NodeKinds = []string{BecameHolder, Released, BecameStandby, HealthChanged, ConflictSeen, DrillStarted, DrillEnded}

// ClusterKinds are the events that run on the Raft leader.
var ClusterKinds = []string{FailoverCommitted, MemberJoined, MemberRemoved, MaintenanceOn, MaintenanceOff}

// KnownKind reports whether k names an event.
func KnownKind(k string) bool {
	return slices.Contains(NodeKinds, k) || slices.Contains(ClusterKinds, k)
}

// The roles an event names.
const (
	RoleHolder  = "holder"
	RoleStandby = "standby"
	RoleWitness = "witness"
)

// Event is what a hook is told. Its JSON form is the webhook's body and an
// exec hook's standard input; an exec hook also gets each field in its
// environment (Env).
type Event struct {
	// ID is unique per event and the same in every attempt to deliver it:
	// a receiver drops an id it has seen. Set by Emit when empty.
	ID string `json:"id"`
	// Event is the kind (BecameHolder, ...).
	Event string `json:"event"`
	// Node is the node the hook runs on: where the event happened, or the
	// leader for a cluster event.
	Node string `json:"node"`
	// Role is Node's role after the event: holder, standby or witness.
	Role string `json:"role"`
	// Epoch is the epoch of the active assignment the event belongs to; a
	// receiver ignores an event older than the newest epoch it has seen.
	Epoch uint64 `json:"epoch"`
	// Reason says why (the history's reason for a failover, the health
	// verdict's reason, the conflict seen, ...).
	Reason string `json:"reason"`
	// PreviousHolder is the node active before the epoch (may be empty).
	PreviousHolder string `json:"previous_holder"`
	// Holder is the node the replicated state names active now.
	Holder string `json:"holder"`
	// Member is the member a member-joined or member-removed is about.
	Member string `json:"member,omitempty"`
	// Healthy is the new verdict of a health-changed.
	Healthy *bool `json:"healthy,omitempty"`
	// Time is when it happened. Set by Emit when zero.
	Time time.Time `json:"time"`
}

// Env returns the event as environment variables (NEWBIEHA_EVENT, ...).
func (e Event) Env() []string {
	env := []string{
		"NEWBIEHA_EVENT=" + e.Event,
		"NEWBIEHA_EVENT_ID=" + e.ID,
		"NEWBIEHA_NODE=" + e.Node,
		"NEWBIEHA_ROLE=" + e.Role,
		"NEWBIEHA_EPOCH=" + strconv.FormatUint(e.Epoch, 10),
		"NEWBIEHA_REASON=" + e.Reason,
		"NEWBIEHA_PREVIOUS_HOLDER=" + e.PreviousHolder,
		"NEWBIEHA_HOLDER=" + e.Holder,
		"NEWBIEHA_MEMBER=" + e.Member,
		"NEWBIEHA_TIME=" + e.Time.UTC().Format(time.RFC3339Nano),
	}
	if e.Healthy != nil {
		env = append(env, "NEWBIEHA_HEALTHY="+strconv.FormatBool(*e.Healthy))
	}
	return env
}
