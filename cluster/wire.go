package cluster

import (
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// This file holds the JSON bodies of the agent API (see docs/api.md).

// JoinRequest is sent by a node that wants to join, with a token.
type JoinRequest struct {
	Token     string   `json:"token"`
	Name      string   `json:"name"`
	Role      fsm.Role `json:"role"`
	Advertise string   `json:"advertise"`
	Ports     Ports    `json:"ports"`
	PublicKey string   `json:"public_key"` // PEM PKIX, ECDSA P-256
}

// JoinResponse carries what the new node needs to be a member.
type JoinResponse struct {
	CACert    string   `json:"ca_cert"`
	CAKey     string   `json:"ca_key,omitempty"` // GPU members only
	NodeCert  string   `json:"node_cert"`
	GossipKey string   `json:"gossip_key"`
	Members   []string `json:"members"` // API addresses to contact
}

// VoterRequest asks the leader to make the calling node a voter.
type VoterRequest struct {
	Name     string `json:"name"`
	RaftAddr string `json:"raft_addr"`
}

// TokenRequest asks for a fresh join token.
type TokenRequest struct {
	TTL Duration `json:"ttl"`
	// Role is the role the token admits; empty means gpu.
	Role fsm.Role `json:"role,omitempty"`
}

// TokenResponse is a fresh join token.
type TokenResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	Role    fsm.Role  `json:"role"`
}

// RemoveRequest asks to remove a member.
type RemoveRequest struct {
	Name string `json:"name"`
	// Force removes even the active node, or a voter without which the
	// remaining voters alive are no majority (RemoveRefusal).
	Force bool `json:"force,omitempty"`
}

// SelfReport is one member's own view of itself.
type SelfReport struct {
	Name         string   `json:"name"`
	Role         fsm.Role `json:"role"`
	Raft         string   `json:"raft"`
	Leader       string   `json:"leader"`
	Term         uint64   `json:"term"`
	AppliedIndex uint64   `json:"applied_index"`
	CommitIndex  uint64   `json:"commit_index"`
	LastIndex    uint64   `json:"last_index"`
	// LastContact is how long ago this follower last heard from a leader
	// (0 on the leader, -1 never).
	LastContact Duration `json:"last_contact"`
	// Version is the agent's release.
	Version  string `json:"version,omitempty"`
	HoldsVIP bool   `json:"holds_vip"`
	// Lease is this node's holder lease and its voter's grant.
	Lease        LeaseState `json:"lease"`
	Healthy      bool       `json:"healthy"`
	HealthReason string     `json:"health_reason,omitempty"`
	// Health is the full health report (checks, GPU telemetry).
	Health any `json:"health,omitempty"`
	// Blocked is, on the leader, why the active role stays put.
	Blocked string `json:"blocked,omitempty"`
	// VIPConflict is what this member's last ARP probe found wrong.
	VIPConflict string `json:"vip_conflict,omitempty"`
}

// Status is the cluster as seen from one member.
type Status struct {
	Node        string         `json:"node"` // the member that answered
	Leader      string         `json:"leader"`
	Active      fsm.Assignment `json:"active"`
	Maintenance bool           `json:"maintenance"`
	// MaintenanceInfo says since when, why and by whom maintenance mode
	// is on (nil while it is off).
	MaintenanceInfo *fsm.MaintenanceInfo `json:"maintenance_info,omitempty"`
	VIP             VIPStatus            `json:"vip"`
	// Blocked says why the leader leaves the active role where it is
	// although the active node is unhealthy or gone ("" when nothing is
	// wrong).
	Blocked string         `json:"blocked,omitempty"`
	Members []MemberStatus `json:"members"`
	// Unanswered lists the members that did not answer within
	// StatusTimeout.
	Unanswered []string `json:"unanswered,omitempty"`
}

// VIPStatus says who holds the VIP, by the members' own reports.
type VIPStatus struct {
	Address string `json:"address"`
	// Holder is the member that reports holding the VIP, "" if none.
	Holder string `json:"holder"`
	// Conflict is set when more than one member reports holding it.
	Conflict string `json:"conflict,omitempty"`
}

// MemberStatus is one member's line in Status.
type MemberStatus struct {
	Name     string   `json:"name"`
	Role     fsm.Role `json:"role"`
	Address  string   `json:"address"`
	APIAddr  string   `json:"api_addr"`
	RaftAddr string   `json:"raft_addr"`
	Raft     string   `json:"raft"` // leader, follower, candidate or unreachable
	Voter    bool     `json:"voter"`
	// SeesLeader is who this member itself believes leads ("" if unknown
	// or unreachable).
	SeesLeader string `json:"sees_leader"`
	// HoldsVIP is the member's own report that the VIP is on its host.
	HoldsVIP bool `json:"holds_vip"`
	// Lease is the member's own report of its holder lease and its
	// voter's grant.
	Lease LeaseState `json:"lease"`
	// Healthy is the member's own verdict on its service.
	Healthy      bool      `json:"healthy"`
	HealthReason string    `json:"health_reason,omitempty"`
	JoinedAt     time.Time `json:"joined_at"`
	// Health is the member's full report (checks, GPU telemetry).
	Health any `json:"health,omitempty"`
	// VIPConflict is what the member's last ARP probe found wrong.
	VIPConflict string `json:"vip_conflict,omitempty"`
	// Alive is gossip's (memberlist's) view of the member.
	Alive bool `json:"alive"`
	// GossipAge is how old the member's gossiped health is here.
	GossipAge Duration `json:"gossip_age,omitempty"`
	// Certs are the node certificates the member record honours, newest
	// first (`newbieha cert status`).
	Certs []fsm.MemberCert `json:"certs,omitempty"`
	// Answered is true when the member answered for itself in time; the
	// Raft figures below are its own.
	Answered     bool     `json:"answered"`
	Term         uint64   `json:"term,omitempty"`
	AppliedIndex uint64   `json:"applied_index,omitempty"`
	CommitIndex  uint64   `json:"commit_index,omitempty"`
	LastContact  Duration `json:"last_contact,omitempty"`
	Version      string   `json:"version,omitempty"`
}

// Raft states as Status reports them.
const (
	RaftLeader      = "leader"
	RaftFollower    = "follower"
	RaftCandidate   = "candidate"
	RaftUnreachable = "unreachable"
)

// ErrorBody is the body of every API error.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// Duration is a time.Duration that reads and writes as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads a duration string such as "24h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errBadDuration(string(b))
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return errBadDuration(string(b))
	}
	*d = Duration(v)
	return nil
}
