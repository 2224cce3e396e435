package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Result is what (*FSM).Apply returns for every log entry, as a value: the
// raft.ApplyFuture's Response() holds an fsm.Result.
type Result struct {
	// Err is nil when the entry was applied (or skipped because its type
	// carries IgnoreUnknownFlag); otherwise it wraps one of the package's
	// sentinel errors and the state is unchanged apart from LastIndex.
	Err error
	// Index is the Raft log index of the entry.
	Index uint64
}

// Config configures an FSM.
type Config struct {
	// Logger receives rejections, skipped entries and restores. Nil means
	// logging.Discard().
	Logger *slog.Logger
	// ValidateSettings checks a settings document (compacted JSON, never
	// nil) as a SetSettings is applied; an error rejects the command. The
	// schema belongs to the cluster package, which injects its validator
	// here, so that no path (a forwarded command included) commits
	// settings the agents cannot run with. It must be deterministic: the
	// same verdict for the same bytes on every replica, reading no clock,
	// file or network. Nil accepts any JSON object.
	ValidateSettings func(json.RawMessage) error
}

// handler applies one decoded, validated command to s. It must check every
// state-dependent rule before it changes anything, so that a rejected
// command leaves s as it was.
type handler func(s *State, c Command, index uint64) error

// FSM is the replicated state machine: a raft.FSM over State. Apply,
// Snapshot and Restore are called by Raft; State, Member and Changed are for
// readers on any goroutine.
type FSM struct {
	logger           *slog.Logger
	validateSettings func(json.RawMessage) error // nil accepts any object
	handlers         map[Type]handler            // built in New, read-only afterwards

	mu      sync.RWMutex // guards state and changed
	state   State
	changed chan struct{}
}

// Compile-time check that FSM is a raft.FSM.
var _ raft.FSM = (*FSM)(nil)

// New returns an FSM holding the empty state.
func New(cfg Config) *FSM {
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	f := &FSM{
		logger:           logger,
		validateSettings: cfg.ValidateSettings,
		handlers:         make(map[Type]handler),
		state:            emptyState(),
		changed:          make(chan struct{}),
	}
	f.register(TypeUpsertMember, applyUpsertMember)
	f.register(TypeRemoveMember, applyRemoveMember)
	f.register(TypeSetActive, applySetActive)
	f.register(TypeSetMaintenance, applySetMaintenance)
	f.register(TypeSetSettings, f.applySetSettings)
	f.register(TypeCreateToken, applyCreateToken)
	f.register(TypePruneTokens, applyPruneTokens)
	f.register(TypeRevokeToken, applyRevokeToken)
	f.register(TypeRecordEvent, applyRecordEvent)
	return f
}

// register adds the handler for t. Registering a type twice is a
// programming error and panics at construction, not at apply time.
func (f *FSM) register(t Type, h handler) {
	if _, dup := f.handlers[t]; dup {
		panic(fmt.Sprintf("fsm: handler for type %d (%s) registered twice", uint8(t), t))
	}
	f.handlers[t] = h
}

// Apply applies one committed log entry and returns a Result. It is
// deterministic: it reads nothing but the entry and the state. Every entry,
// applied, skipped or rejected, advances State.LastIndex to l.Index, so a
// snapshot always names the last index it covers. An entry that fails to
// decode or breaks a rule is rejected with Result.Err and leaves the rest of
// the state unchanged; Apply never panics.
func (f *FSM) Apply(l *raft.Log) (out interface{}) {
	if l == nil {
		return Result{Err: fmt.Errorf("apply: nil log entry: %w", ErrMalformedCommand)}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			f.logger.Error("panic while applying log entry; entry rejected", "index", l.Index,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			out = Result{Index: l.Index, Err: fmt.Errorf("apply index %d: %v: %w", l.Index, p, ErrApplyPanic)}
		}
	}()

	f.state.LastIndex = l.Index
	if l.Type != raft.LogCommand {
		// Raft hands only LogCommand entries to a plain FSM; anything
		// else carries nothing for us.
		f.logger.Debug("ignoring non-command log entry", "index", l.Index, "type", l.Type.String())
		return Result{Index: l.Index}
	}
	err := f.apply(l)
	switch {
	case err == nil:
		close(f.changed)
		f.changed = make(chan struct{})
	case errors.Is(err, errSkipped):
		f.logger.Warn("skipping log entry of unknown type marked ignorable", "index", l.Index,
			"type", uint8(l.Data[0]), "version", l.Data[1], "error", err)
		err = nil
	case errors.Is(err, ErrUnknownCommand), errors.Is(err, ErrMalformedCommand):
		// The leader validates before proposing; this is a version
		// mismatch or a bug, so say it loudly.
		f.logger.Error("rejected log entry", "index", l.Index, "error", err)
	default:
		f.logger.Warn("rejected command", "index", l.Index, "error", err)
	}
	return Result{Index: l.Index, Err: err}
}

// errSkipped marks an unknown entry whose type carries IgnoreUnknownFlag.
// It never leaves the package: Apply turns it into a nil Result.Err.
var errSkipped = errors.New("skipped")

// apply decodes and applies one command entry.
func (f *FSM) apply(l *raft.Log) error {
	c, err := Decode(l.Data)
	if err != nil {
		if errors.Is(err, ErrUnknownCommand) && Type(l.Data[0])&IgnoreUnknownFlag != 0 {
			return fmt.Errorf("%w: %w", errSkipped, err)
		}
		return fmt.Errorf("apply index %d: %w", l.Index, err)
	}
	h, ok := f.handlers[c.Type()]
	if !ok { // Decode and New disagree: a bug that a test guards against
		return fmt.Errorf("apply index %d: no handler for %s: %w", l.Index, c.Type(), ErrUnknownCommand)
	}
	if err := h(&f.state, c, l.Index); err != nil {
		return fmt.Errorf("apply index %d: %s: %w", l.Index, c.Type(), err)
	}
	return nil
}

// State returns a deep copy of the current state; the caller may keep and
// modify it. Members and Tokens are never nil.
func (f *FSM) State() State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.clone()
}

// Member returns the named member and whether it is present.
func (f *FSM) Member(name string) (Member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.state.Members[name]
	return m, ok
}

// Changed returns a channel that is closed after the next accepted command
// or restore; each close is followed by a fresh channel, so it works as a
// broadcast. A watcher takes the channel before reading the state, so that
// it cannot miss a change:
//
//	for {
//		ch := f.Changed()
//		reconcile(f.State())
//		select {
//		case <-ch:
//		case <-ctx.Done():
//			return
//		}
//	}
//
// Rejected and skipped entries do not close it, though they advance
// LastIndex.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// applyUpsertMember adds or replaces a member. A member that is the active
// node may not be turned into a witness. A command that names a token is
// refused unless the token admits a join at the member's join time, and
// spends one of its uses with the member record, in the same step: two
// joins racing for the last use cannot both be recorded.
func applyUpsertMember(s *State, c Command, _ uint64) error {
	cmd := c.(UpsertMember)
	m := cmd.Member
	if m.Name == s.Active.Node && m.Role != RoleGPU {
		return fmt.Errorf("member %s is the active node, cannot become role %q: %w", m.Name, m.Role, ErrNotGPU)
	}
	if cmd.TokenID != "" {
		t, ok := s.Tokens[cmd.TokenID]
		switch {
		case !ok:
			return fmt.Errorf("member %s: token %q: %w", m.Name, cmd.TokenID, ErrUnknownToken)
		case !m.JoinedAt.Before(t.Expires):
			return fmt.Errorf("member %s: token %s expired at %s: %w", m.Name, t.ID, t.Expires.Format(time.RFC3339), ErrTokenUnusable)
		case t.Revoked():
			return fmt.Errorf("member %s: token %s was revoked at %s: %w", m.Name, t.ID, t.RevokedAt.Format(time.RFC3339), ErrTokenUnusable)
		case t.UsedUp():
			return fmt.Errorf("member %s: token %s has spent all its %d uses: %w", m.Name, t.ID, t.UsesAllowed, ErrTokenUnusable)
		}
		t.UsesSpent++
		s.Tokens[t.ID] = t
	}
	s.Members[m.Name] = m
	return nil
}

// applyRemoveMember removes a present member. Removing the active node is
// allowed: Active keeps naming it until the controller moves it.
func applyRemoveMember(s *State, c Command, _ uint64) error {
	name := c.(RemoveMember).Name
	if _, ok := s.Members[name]; !ok {
		return fmt.Errorf("member %q: %w", name, ErrUnknownMember)
	}
	delete(s.Members, name)
	return nil
}

// applySetActive changes the active node and records the transition.
func applySetActive(s *State, c Command, index uint64) error {
	cmd := c.(SetActive)
	if cmd.Epoch <= s.Active.Epoch {
		return fmt.Errorf("epoch %d is not greater than current epoch %d: %w", cmd.Epoch, s.Active.Epoch, ErrStaleEpoch)
	}
	if cmd.Node != "" {
		m, ok := s.Members[cmd.Node]
		if !ok {
			return fmt.Errorf("node %q: %w", cmd.Node, ErrUnknownMember)
		}
		if m.Role != RoleGPU {
			return fmt.Errorf("node %q has role %q: %w", cmd.Node, m.Role, ErrNotGPU)
		}
	}
	s.History = appendHistory(s.History, Transition{
		Epoch:  cmd.Epoch,
		From:   s.Active.Node,
		To:     cmd.Node,
		Reason: cmd.Reason,
		Time:   cmd.Time,
		Index:  index,
	})
	s.Active = Assignment{Node: cmd.Node, Epoch: cmd.Epoch, Since: cmd.Time, Reason: cmd.Reason}
	return nil
}

// appendHistory appends t, dropping the oldest entries beyond HistoryLimit.
// Dropping re-slices instead of copying, so the cost is amortised O(1):
// append moves the window into a fresh array whenever capacity runs out,
// and the old array, with the dropped entries, is freed then.
func appendHistory(h []Transition, t Transition) []Transition {
	if over := len(h) + 1 - HistoryLimit; over > 0 {
		h = h[over:]
	}
	return append(h, t)
}

// applySetMaintenance turns maintenance mode on or off, keeping when, why
// and by whom it was turned on. Turning it on again while on keeps Since
// and takes the new reason and caller.
func applySetMaintenance(s *State, c Command, _ uint64) error {
	m := c.(SetMaintenance)
	if !m.On {
		s.Maintenance, s.MaintenanceInfo = false, nil
		return nil
	}
	info := MaintenanceInfo{Since: m.Time, Reason: m.Reason, By: m.By}
	if s.Maintenance && s.MaintenanceInfo != nil {
		info.Since = s.MaintenanceInfo.Since
	}
	s.Maintenance, s.MaintenanceInfo = true, &info
	return nil
}

// applySetSettings replaces the settings document (nil clears it) once the
// injected validator accepts it.
func (f *FSM) applySetSettings(s *State, c Command, _ uint64) error {
	doc := c.(SetSettings).Settings
	if doc != nil && f.validateSettings != nil {
		if err := f.validateSettings(doc); err != nil {
			return invalid(fmt.Errorf("settings: %w", err))
		}
	}
	s.Settings = doc
	return nil
}

// applyCreateToken stores a new token; an existing ID is rejected. It
// first prunes every token that has expired by the new one's CreatedAt
// (Expires at or before it), so that the state holds no more tokens than
// were created within MaxTokenLifetime: Apply reads no clock, the
// command's own time stands in for it.
func applyCreateToken(s *State, c Command, _ uint64) error {
	t := c.(CreateToken).Token
	if _, ok := s.Tokens[t.ID]; ok {
		return fmt.Errorf("token %q: %w", t.ID, ErrTokenExists)
	}
	pruneTokens(s, t.CreatedAt)
	s.Tokens[t.ID] = t
	return nil
}

// pruneTokens deletes every token whose Expires is at or before now.
func pruneTokens(s *State, now time.Time) {
	for id, t := range s.Tokens {
		if !now.Before(t.Expires) {
			delete(s.Tokens, id)
		}
	}
}

// applyRevokeToken marks a stored token revoked. Revoking it again keeps
// the first revocation.
func applyRevokeToken(s *State, c Command, _ uint64) error {
	cmd := c.(RevokeToken)
	t, ok := s.Tokens[cmd.ID]
	if !ok {
		return fmt.Errorf("token %q: %w", cmd.ID, ErrUnknownToken)
	}
	if t.Revoked() {
		return nil
	}
	t.RevokedAt, t.RevokedBy = cmd.Time, cmd.By
	s.Tokens[t.ID] = t
	return nil
}

// applyPruneTokens deletes every token whose Expires is at or before Now.
func applyPruneTokens(s *State, c Command, _ uint64) error {
	pruneTokens(s, c.(PruneTokens).Now)
	return nil
}

// applyRecordEvent appends the event, stamped with the entry's index. The
// node need not be a member: an event about a removed node (a VIP conflict
// it causes, say) is still worth recording.
func applyRecordEvent(s *State, c Command, index uint64) error {
	e := c.(RecordEvent).Event
	e.Index = index
	s.Events = appendEvent(s.Events, e)
	return nil
}

// appendEvent appends e, dropping the oldest events beyond EventLimit, in
// amortised O(1) like appendHistory.
func appendEvent(events []Event, e Event) []Event {
	if over := len(events) + 1 - EventLimit; over > 0 {
		events = events[over:]
	}
	return append(events, e)
}
