package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// emptyState returns the state of a new cluster: no members, nobody active.
func emptyState() State {
	return State{Members: make(map[string]Member), Tokens: make(map[string]Token)}
}

// clone returns a deep copy of s. Members and Tokens are never nil in the
// copy; History, Events and Settings are nil when empty.
func (s State) clone() State {
	c := s
	c.Members = make(map[string]Member, len(s.Members))
	for k, v := range s.Members {
		c.Members[k] = v
	}
	c.Tokens = make(map[string]Token, len(s.Tokens))
	for k, v := range s.Tokens {
		c.Tokens[k] = v
	}
	if s.MaintenanceInfo != nil {
		m := *s.MaintenanceInfo
		c.MaintenanceInfo = &m
	}
	c.Settings = nil
	if len(s.Settings) > 0 {
		c.Settings = bytes.Clone(s.Settings)
	}
	c.History = nil
	if len(s.History) > 0 {
		c.History = slices.Clone(s.History)
	}
	c.Events = nil
	if len(s.Events) > 0 {
		c.Events = slices.Clone(s.Events)
	}
	return c
}

// normalizeState puts a state read from a snapshot into the form Apply
// keeps: non-nil maps, nil empty slices, times in UTC, compact settings.
// It returns an error if the settings are not a JSON object or null.
func normalizeState(s *State) error {
	if s.Members == nil {
		s.Members = make(map[string]Member)
	}
	for k, m := range s.Members {
		m.JoinedAt = m.JoinedAt.UTC()
		s.Members[k] = m
	}
	if s.Tokens == nil {
		s.Tokens = make(map[string]Token)
	}
	for k, t := range s.Tokens {
		t.CreatedAt = t.CreatedAt.UTC()
		t.Expires = t.Expires.UTC()
		t.RevokedAt = t.RevokedAt.UTC()
		s.Tokens[k] = t
	}
	s.Active.Since = s.Active.Since.UTC()
	if s.MaintenanceInfo != nil {
		if !s.Maintenance {
			s.MaintenanceInfo = nil // kept only while on
		} else {
			s.MaintenanceInfo.Since = s.MaintenanceInfo.Since.UTC()
		}
	}
	if len(s.History) == 0 {
		s.History = nil
	}
	for i := range s.History {
		s.History[i].Time = s.History[i].Time.UTC()
	}
	if len(s.Events) == 0 {
		s.Events = nil
	}
	for i := range s.Events {
		s.Events[i].Time = s.Events[i].Time.UTC()
	}
	settings, err := normalizeSettings(s.Settings)
	if err != nil {
		return err
	}
	s.Settings = settings
	return nil
}

// validateState checks the invariants Apply maintains, so that a restored
// state is one that Apply could have produced.
func validateState(s *State) error {
	for k, m := range s.Members {
		if k != m.Name {
			return fmt.Errorf("members: key %q holds member named %q", k, m.Name)
		}
		if err := validateMember(m); err != nil {
			return fmt.Errorf("members: %w", err)
		}
	}
	for k, t := range s.Tokens {
		if k != t.ID {
			return fmt.Errorf("tokens: key %q holds token %q", k, t.ID)
		}
		if err := validateToken(t); err != nil {
			return fmt.Errorf("tokens: %w", err)
		}
	}
	if err := validateAssignment(s.Active); err != nil {
		return fmt.Errorf("active: %w", err)
	}
	if err := validateHistory(s.History, s.Active); err != nil {
		return err
	}
	return validateEvents(s.Events)
}

// validateAssignment checks the active assignment. The node need not be a
// member: RemoveMember may remove the active node.
func validateAssignment(a Assignment) error {
	if a.Epoch == 0 {
		if a != (Assignment{}) {
			return fmt.Errorf("epoch 0 with node %q, reason %q: the zero assignment must be empty", a.Node, a.Reason)
		}
		return nil
	}
	if a.Node != "" {
		if err := checkName("node", a.Node); err != nil {
			return err
		}
	}
	if err := checkTime("since", a.Since, true); err != nil {
		return err
	}
	return checkReason("reason", a.Reason)
}

// validateHistory checks the bound, that epochs strictly increase, that
// each transition starts where the previous one ended, and that the last
// one is the current assignment.
func validateHistory(h []Transition, active Assignment) error {
	if len(h) > HistoryLimit {
		return fmt.Errorf("history: %d transitions, at most %d allowed", len(h), HistoryLimit)
	}
	for i, t := range h {
		field := fmt.Sprintf("history[%d]", i)
		if t.Epoch == 0 {
			return errors.New(field + ": epoch 0")
		}
		if i > 0 {
			prev := h[i-1]
			if t.Epoch <= prev.Epoch {
				return fmt.Errorf("%s: epoch %d not greater than previous epoch %d", field, t.Epoch, prev.Epoch)
			}
			if t.From != prev.To {
				return fmt.Errorf("%s: from %q but previous transition went to %q", field, t.From, prev.To)
			}
		}
		for _, n := range []struct{ f, v string }{{"from", t.From}, {"to", t.To}} {
			if n.v != "" {
				if err := checkName(field+": "+n.f, n.v); err != nil {
					return err
				}
			}
		}
		if err := checkTime(field+": time", t.Time, true); err != nil {
			return err
		}
		if err := checkReason(field+": reason", t.Reason); err != nil {
			return err
		}
	}
	if len(h) > 0 {
		last := h[len(h)-1]
		if last.Epoch != active.Epoch || last.To != active.Node {
			return fmt.Errorf("history: last transition (epoch %d to %q) is not the active assignment (epoch %d, node %q)",
				last.Epoch, last.To, active.Epoch, active.Node)
		}
	}
	return nil
}

// validateEvents checks the bound, that each event is valid and that
// indexes do not decrease (Apply appends in log order).
func validateEvents(events []Event) error {
	if len(events) > EventLimit {
		return fmt.Errorf("events: %d events, at most %d allowed", len(events), EventLimit)
	}
	for i, e := range events {
		if err := validateEvent(e); err != nil {
			return fmt.Errorf("events[%d]: %w", i, err)
		}
		if i > 0 && e.Index < events[i-1].Index {
			return fmt.Errorf("events[%d]: index %d less than previous index %d", i, e.Index, events[i-1].Index)
		}
	}
	return nil
}
