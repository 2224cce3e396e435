package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Type identifies a command in the Raft log. It is byte 0 of every entry.
// The top bit (IgnoreUnknownFlag) marks a command that an older node which
// does not know the type may safely skip.
type Type uint8

// IgnoreUnknownFlag set on a Type means "skip if unknown" instead of
// "reject if unknown".
const IgnoreUnknownFlag Type = 0x80

// Command types. Never renumber or reuse one: a semantic change gets a new
// type and the old handler stays.
const (
	TypeUpsertMember   Type = 1
	TypeRemoveMember   Type = 2
	TypeSetActive      Type = 3
	TypeSetMaintenance Type = 4
	TypeSetSettings    Type = 5
	TypeCreateToken    Type = 6
	TypePruneTokens    Type = 7
	TypeRevokeToken    Type = 9

	// TypeRecordEvent carries IgnoreUnknownFlag: an event is an audit
	// record that changes nothing the cluster acts on, so a node that
	// does not know the type (or a later version of it) may skip it.
	TypeRecordEvent Type = IgnoreUnknownFlag | 8
)

// Command is one change to the replicated state. Everything a command needs
// (time, identifiers) travels inside it: Apply reads no clock.
type Command interface {
	// Type is the command's wire type.
	Type() Type
	// Version is the payload's schema version for this type.
	Version() uint8
	// Validate checks the command on its own, before it is proposed.
	Validate() error
}

// UpsertMember adds a member or replaces the one with the same name (a
// wiped node that joins again under its old name).
type UpsertMember struct {
	Member Member `json:"member"`
	// TokenID, when set, names the join token that admitted the member:
	// Apply refuses the command unless that token exists and admits a
	// join at Member.JoinedAt (not expired, revoked or used up), and
	// spends one of its uses in the same step. Empty in entries written
	// before use counts (COMPAT(v1)) and in records that no join wrote
	// (init, a voter's own record): those spend nothing.
	TokenID string `json:"token_id,omitempty"`
}

// RemoveMember removes a member by name.
type RemoveMember struct {
	Name string `json:"name"`
}

// SetActive names the active node. Epoch must be greater than the current
// one; Node must be a GPU member, or empty to say "nobody".
type SetActive struct {
	Node   string    `json:"node"`
	Epoch  uint64    `json:"epoch"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	// COMPAT(v1): entries of the previous release may carry
	// "handover": true. It is ignored: no flag is trusted, the holder
	// lease alone decides when the new node may claim.
}

// SetMaintenance turns maintenance mode on or off.
type SetMaintenance struct {
	On     bool      `json:"on"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	// By says who asked (an operator's name, root@NODE); empty in entries
	// from before it was kept. An optional field: older nodes ignore it.
	By string `json:"by,omitempty"`
}

// SetSettings replaces the cluster settings document.
type SetSettings struct {
	Settings json.RawMessage `json:"settings"`
}

// CreateToken stores a join token.
type CreateToken struct {
	Token Token `json:"token"`
}

// PruneTokens deletes tokens that expired before Now.
type PruneTokens struct {
	Now time.Time `json:"now"`
}

// RevokeToken withdraws a join token: it admits nothing from then on. The
// record stays, marked revoked, until it expires and is pruned.
type RevokeToken struct {
	ID string `json:"id"`
	// Time is when it was revoked, stamped by the proposer.
	Time time.Time `json:"time"`
	// By says who revoked it (an operator's name, root@NODE).
	By string `json:"by"`
}

// RecordEvent appends an event to State.Events, dropping the oldest beyond
// EventLimit. Event.Index is set by Apply to the entry's log index.
type RecordEvent struct {
	Event Event `json:"event"`
}

// Payload versions of the command types this node knows. A version is
// bumped only when old nodes may not read the new payload as the old one;
// see docs/fsm.md.
const (
	versionUpsertMember   uint8 = 1
	versionRemoveMember   uint8 = 1
	versionSetActive      uint8 = 1
	versionSetMaintenance uint8 = 1
	versionSetSettings    uint8 = 1
	versionCreateToken    uint8 = 1
	versionPruneTokens    uint8 = 1
	versionRecordEvent    uint8 = 1
	versionRevokeToken    uint8 = 1
)

// String returns the command type's name, or "unknown(N)". The flag is
// part of the type: IgnoreUnknownFlag|TypeSetActive is unknown, and
// TypeRecordEvent without the flag is unknown too.
func (t Type) String() string {
	switch t {
	case TypeUpsertMember:
		return "UpsertMember"
	case TypeRemoveMember:
		return "RemoveMember"
	case TypeSetActive:
		return "SetActive"
	case TypeSetMaintenance:
		return "SetMaintenance"
	case TypeSetSettings:
		return "SetSettings"
	case TypeCreateToken:
		return "CreateToken"
	case TypePruneTokens:
		return "PruneTokens"
	case TypeRecordEvent:
		return "RecordEvent"
	case TypeRevokeToken:
		return "RevokeToken"
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// Type returns TypeUpsertMember.
func (UpsertMember) Type() Type { return TypeUpsertMember }

// Version returns the payload version this node writes.
func (UpsertMember) Version() uint8 { return versionUpsertMember }

// Validate checks the member's name, role, addresses and join time, and a
// token id when one is given (then the join time is required: it is the
// time the token is judged at).
func (c UpsertMember) Validate() error {
	if err := validateMember(c.Member); err != nil {
		return invalid(err)
	}
	if c.TokenID == "" {
		return nil
	}
	if !validTokenID(c.TokenID) {
		return invalid(fmt.Errorf("token_id %q: want ^[a-z0-9]{6}$", c.TokenID))
	}
	return invalid(checkTime("member "+c.Member.Name+": joined_at (with token_id)", c.Member.JoinedAt, true))
}

// Type returns TypeRemoveMember.
func (RemoveMember) Type() Type { return TypeRemoveMember }

// Version returns the payload version this node writes.
func (RemoveMember) Version() uint8 { return versionRemoveMember }

// Validate checks the name.
func (c RemoveMember) Validate() error { return invalid(checkName("name", c.Name)) }

// Type returns TypeSetActive.
func (SetActive) Type() Type { return TypeSetActive }

// Version returns the payload version this node writes.
func (SetActive) Version() uint8 { return versionSetActive }

// Validate checks the node name (empty means nobody), that the epoch is
// set, the time is set and the reason is not empty. Whether the epoch is
// newer and the node a GPU member depends on the state: Apply checks it.
func (c SetActive) Validate() error { return invalid(c.validate()) }

func (c SetActive) validate() error {
	if c.Node != "" {
		if err := checkName("node", c.Node); err != nil {
			return err
		}
	}
	if c.Epoch == 0 {
		return errors.New("epoch 0: must be at least 1")
	}
	if err := checkTime("time", c.Time, true); err != nil {
		return err
	}
	return checkReason("reason", c.Reason)
}

// Type returns TypeSetMaintenance.
func (SetMaintenance) Type() Type { return TypeSetMaintenance }

// Version returns the payload version this node writes.
func (SetMaintenance) Version() uint8 { return versionSetMaintenance }

// Validate checks that the time is set, the reason is not empty, and By,
// when set, is text of at most MaxReasonLen bytes.
func (c SetMaintenance) Validate() error {
	if err := checkTime("time", c.Time, true); err != nil {
		return invalid(err)
	}
	if c.By != "" {
		if err := checkReason("by", c.By); err != nil {
			return invalid(err)
		}
	}
	return invalid(checkReason("reason", c.Reason))
}

// Type returns TypeSetSettings.
func (SetSettings) Type() Type { return TypeSetSettings }

// Version returns the payload version this node writes.
func (SetSettings) Version() uint8 { return versionSetSettings }

// Validate checks that the settings are a JSON object, or absent/null to
// clear them. Their schema belongs to the cluster package.
func (c SetSettings) Validate() error {
	_, err := normalizeSettings(c.Settings)
	return invalid(err)
}

// Type returns TypeCreateToken.
func (CreateToken) Type() Type { return TypeCreateToken }

// Version returns the payload version this node writes.
func (CreateToken) Version() uint8 { return versionCreateToken }

// Validate checks the token's ID, secret hash, times, lifetime (at most
// MaxTokenLifetime) and role (empty or a valid role).
func (c CreateToken) Validate() error { return invalid(validateNewToken(c.Token)) }

// Type returns TypePruneTokens.
func (PruneTokens) Type() Type { return TypePruneTokens }

// Version returns the payload version this node writes.
func (PruneTokens) Version() uint8 { return versionPruneTokens }

// Validate checks that Now is set.
func (c PruneTokens) Validate() error { return invalid(checkTime("now", c.Now, true)) }

// Type returns TypeRevokeToken.
func (RevokeToken) Type() Type { return TypeRevokeToken }

// Version returns the payload version this node writes.
func (RevokeToken) Version() uint8 { return versionRevokeToken }

// Validate checks the id, that the time is set and that By is not empty.
// Whether the token exists depends on the state: Apply checks it.
func (c RevokeToken) Validate() error {
	if !validTokenID(c.ID) {
		return invalid(fmt.Errorf("id %q: want ^[a-z0-9]{6}$", c.ID))
	}
	if err := checkTime("time", c.Time, true); err != nil {
		return invalid(err)
	}
	return invalid(checkReason("by", c.By))
}

// Type returns TypeRecordEvent.
func (RecordEvent) Type() Type { return TypeRecordEvent }

// Version returns the payload version this node writes.
func (RecordEvent) Version() uint8 { return versionRecordEvent }

// Validate checks the event's kind, node (empty or a valid name), detail
// and time. Event.Index is not checked: Apply sets it. The node need not be
// a member, so Apply adds no rule of its own.
func (c RecordEvent) Validate() error { return invalid(validateEvent(c.Event)) }
