package fsm

import (
	"encoding/json"
	"time"
)

// Role is what a member is for: a GPU node can serve, a witness only votes.
type Role string

const (
	// RoleGPU is a node that can run the service and hold the VIP.
	RoleGPU Role = "gpu"
	// RoleWitness is a tie-breaker that never serves.
	RoleWitness Role = "witness"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleGPU || r == RoleWitness }

// String returns the role's name.
func (r Role) String() string { return string(r) }

// Member is one agent of the cluster as the replicated state knows it.
// Addresses are "ip:port" with an IP literal (IPv6 in brackets).
type Member struct {
	// Name is the member's unique name: ^[a-z0-9][a-z0-9-]{0,62}$.
	Name string `json:"name"`
	Role Role   `json:"role"`
	// RaftAddr is the Raft transport address (required).
	RaftAddr string `json:"raft_addr"`
	// APIAddr is the remote API address (required).
	APIAddr string `json:"api_addr"`
	// GossipAddr is the memberlist address; empty if not gossiping.
	GossipAddr string `json:"gossip_addr"`
	// JoinedAt is when the leader admitted it; may be zero.
	JoinedAt time.Time `json:"joined_at"`
	// Certs are the node certificates honoured for this member, newest
	// first: the current one and, after a renewal, the one before it
	// (MaxMemberCerts). A certificate naming the member whose serial is not
	// here is refused everywhere (API, Raft, gossip), so removing a member
	// or renewing twice withdraws its old certificates. Empty in records
	// written before serials were kept: any certificate naming the member
	// is honoured then.
	Certs []MemberCert `json:"certs,omitempty"`
}

// MemberCert is one node certificate issued to a member.
type MemberCert struct {
	// Serial is the certificate's serial number in lower-case hex.
	Serial string `json:"serial"`
	// Expires is its NotAfter.
	Expires time.Time `json:"expires"`
}

// MaxMemberCerts is how many certificates a member record honours at once.
const MaxMemberCerts = 2

// Honours reports whether the member record honours a certificate with
// this serial (lower-case hex, as MemberCert.Serial).
func (m Member) Honours(serial string) bool {
	if len(m.Certs) == 0 {
		return true
	}
	for _, c := range m.Certs {
		if c.Serial == serial {
			return true
		}
	}
	return false
}

// Assignment names the active node. The zero value means "nobody yet"; a
// non-zero Epoch with an empty Node means "nobody" by decision. Node may
// name a member that has since been removed, until the controller moves it.
type Assignment struct {
	Node   string    `json:"node"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

// Transition is one entry of the audit history: a change of active node.
type Transition struct {
	Epoch  uint64    `json:"epoch"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
	Index  uint64    `json:"index"` // Raft log index that committed it
}

// Token is a join token as stored in the replicated state: only a hash of
// its secret is kept, so a snapshot or a log does not leak it.
type Token struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secret_hash"` // hex SHA-256 of the secret
	CreatedAt  time.Time `json:"created_at"`
	Expires    time.Time `json:"expires"`
	// Role is the role the token admits: RoleGPU admits a GPU node (which
	// is handed the CA key) or a witness, RoleWitness only a witness.
	// Empty in tokens written before roles existed (COMPAT(v1)): such a
	// token admits either role and never brings the CA key.
	Role Role `json:"role,omitempty"`
	// UsesAllowed is how many joins the token admits, 1..MaxTokenUses.
	// Zero in tokens written before use counts existed (COMPAT(v1)): such
	// a token is limited by its expiry only.
	UsesAllowed int `json:"uses_allowed,omitempty"`
	// UsesSpent is how many joins it has admitted: every UpsertMember
	// that names the token spends one use as it is applied.
	UsesSpent int `json:"uses_spent,omitempty"`
	// RevokedAt is when a RevokeToken withdrew it; zero while it is not
	// revoked. A revoked token admits nothing and is pruned at expiry
	// like any other.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// RevokedBy says who revoked it (as RevokeToken.By).
	RevokedBy string `json:"revoked_by,omitempty"`
}

// Revoked reports whether a RevokeToken withdrew t.
func (t Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// UsedUp reports whether t has admitted as many joins as it allows. A
// token from before use counts (UsesAllowed 0) is never used up.
func (t Token) UsedUp() bool { return t.UsesAllowed > 0 && t.UsesSpent >= t.UsesAllowed }

// Admits reports whether t may admit a join at now: not expired (a token
// is valid while now < Expires), not revoked and not used up. The secret
// and the role are the caller's to check.
func (t Token) Admits(now time.Time) bool {
	return now.Before(t.Expires) && !t.Revoked() && !t.UsedUp()
}

// HistoryLimit is how many transitions the state keeps; older ones are
// dropped first.
const HistoryLimit = 1000

// Event is an audit record that is not a change of active node: a drill, a
// VIP conflict seen by ARP, etc. Kept in State.Events, bounded by EventLimit.
type Event struct {
	// Kind says what happened: ^[a-z][a-z0-9-]{0,31}$, e.g. "drill",
	// "vip-conflict".
	Kind string `json:"kind"`
	// Node is the node the event concerns: a valid member name, or empty.
	// It need not be a current member (a removed node's VIP conflict is
	// still worth recording).
	Node string `json:"node"`
	// Detail is free text: non-empty UTF-8, at most MaxReasonLen bytes.
	Detail string `json:"detail"`
	// Time is when it happened, stamped by the proposer (required).
	Time time.Time `json:"time"`
	// Index is the Raft log index that committed it. Apply sets it; a
	// value in a command is ignored (Encode and Decode write it as 0).
	Index uint64 `json:"index"`
}

// EventLimit is how many events the state keeps; older ones are dropped
// first.
const EventLimit = 1000

// MaintenanceInfo is what the state keeps of the SetMaintenance that
// turned maintenance mode on.
type MaintenanceInfo struct {
	// Since is when it was turned on (kept when it is turned on again
	// while on).
	Since time.Time `json:"since"`
	// Reason is the latest reason given.
	Reason string `json:"reason"`
	// By is who turned it on last ("" when the command did not say).
	By string `json:"by,omitempty"`
}

// State is the whole replicated state. Values returned by the FSM are deep
// copies that the caller may keep and modify.
type State struct {
	Members     map[string]Member `json:"members"`
	Active      Assignment        `json:"active"`
	Maintenance bool              `json:"maintenance"`
	// MaintenanceInfo says when maintenance mode was turned on, why and by
	// whom; nil while it is off, and in states from before it was kept.
	MaintenanceInfo *MaintenanceInfo `json:"maintenance_info,omitempty"`
	// Settings holds the cluster-wide settings document (VIP, service,
	// checks, timings) as JSON; its schema belongs to the cluster package
	// and is validated there before it is committed.
	Settings json.RawMessage  `json:"settings,omitempty"`
	Tokens   map[string]Token `json:"tokens"`
	History  []Transition     `json:"history"`
	// Events holds the last EventLimit events, oldest first. It is
	// omitted from snapshots when empty, so snapshots written before
	// events existed, and those of clusters that never recorded one, are
	// unchanged; it is nil when empty.
	Events []Event `json:"events,omitempty"`
	// LastIndex is the Raft index of the last entry applied.
	LastIndex uint64 `json:"last_index"`
}
