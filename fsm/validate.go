package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits on field sizes. They keep one log entry, and the history of
// HistoryLimit transitions, small.
const (
	// MaxNameLen is the longest member name (a DNS label).
	MaxNameLen = 63
	// MaxReasonLen is the longest reason, in bytes.
	MaxReasonLen = 1024
	// MaxSettingsLen is the largest settings document, in bytes once
	// compacted.
	MaxSettingsLen = 1 << 20
	// TokenIDLen is the length of a token ID.
	TokenIDLen = 6
	// MaxTokenLifetime is the longest a token may be valid, from its
	// CreatedAt to its Expires. CreateToken is checked against it as it is
	// applied, whoever proposed it (the CLI caps --ttl at the same value).
	MaxTokenLifetime = 7 * 24 * time.Hour
	// MaxTokenUses is the most joins one token may admit
	// (`token create --uses`, at most 100).
	MaxTokenUses = 100
)

// maxEventKindLen is the longest event kind.
const maxEventKindLen = 32

// ValidName reports whether s is a valid member name:
// ^[a-z0-9][a-z0-9-]{0,62}$.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}

// invalid wraps a rule violation in ErrInvalidCommand; nil stays nil.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidCommand, err)
}

// checkName returns an error naming field and value when s is not a valid
// member name.
func checkName(field, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%s %q: want ^[a-z0-9][a-z0-9-]{0,62}$", field, s)
	}
	return nil
}

// checkAddr checks an advertised "ip:port" address: an IP literal (IPv6
// in brackets) that is not unspecified, and a port in 1..65535.
func checkAddr(field, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%s %q: want ip:port", field, s)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%s %q: host %q is not an ip address", field, s, host)
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("%s %q: unspecified address cannot be advertised", field, s)
	}
	if ip.Zone() != "" {
		return fmt.Errorf("%s %q: zoned address not supported", field, s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("%s %q: port %q not in 1..65535", field, s, port)
	}
	return nil
}

// checkTime checks that t can be encoded (year 1..9999 in UTC) and, when
// required, that it is set.
func checkTime(field string, t time.Time, required bool) error {
	if required && t.IsZero() {
		return fmt.Errorf("%s: must be set", field)
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%s %s: year %d out of range 1..9999", field, t.UTC().Format(time.RFC3339Nano), y)
	}
	return nil
}

// checkReason checks a free-text reason: non-empty, valid UTF-8, at most
// MaxReasonLen bytes.
func checkReason(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: must not be empty", field)
	case len(s) > MaxReasonLen:
		return fmt.Errorf("%s: %d bytes, at most %d allowed", field, len(s), MaxReasonLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q: not valid utf-8", field, s)
	}
	return nil
}

// validateMember checks a member on its own.
func validateMember(m Member) error {
	if err := checkName("member name", m.Name); err != nil {
		return err
	}
	if !m.Role.Valid() {
		return fmt.Errorf("member %s: role %q: want %q or %q", m.Name, m.Role, RoleGPU, RoleWitness)
	}
	if err := checkAddr("member "+m.Name+": raft_addr", m.RaftAddr); err != nil {
		return err
	}
	if err := checkAddr("member "+m.Name+": api_addr", m.APIAddr); err != nil {
		return err
	}
	if m.GossipAddr != "" {
		if err := checkAddr("member "+m.Name+": gossip_addr", m.GossipAddr); err != nil {
			return err
		}
	}
	if len(m.Certs) > MaxMemberCerts {
		return fmt.Errorf("member %s: certs: %d, at most %d", m.Name, len(m.Certs), MaxMemberCerts)
	}
	for i, c := range m.Certs {
		if !validSerial(c.Serial) {
			return fmt.Errorf("member %s: certs[%d].serial %q: want 1-40 lower-case hex digits", m.Name, i, c.Serial)
		}
		if err := checkTime(fmt.Sprintf("member %s: certs[%d].expires", m.Name, i), c.Expires, true); err != nil {
			return err
		}
	}
	return checkTime("member "+m.Name+": joined_at", m.JoinedAt, false)
}

// validSerial reports whether s is a certificate serial as MemberCert
// keeps it: 1-40 lower-case hex digits (serials are at most 20 bytes).
func validSerial(s string) bool {
	if len(s) == 0 || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validTokenID reports whether s matches ^[a-z0-9]{6}$.
func validTokenID(s string) bool {
	if len(s) != TokenIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validHash reports whether s is 64 lowercase hex digits (a hex SHA-256).
func validHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validateToken checks a token on its own.
func validateToken(t Token) error {
	if !validTokenID(t.ID) {
		return fmt.Errorf("token id %q: want ^[a-z0-9]{6}$", t.ID)
	}
	if !validHash(t.SecretHash) {
		return fmt.Errorf("token %s: secret_hash %q: want 64 lowercase hex digits", t.ID, t.SecretHash)
	}
	if err := checkTime("token "+t.ID+": created_at", t.CreatedAt, true); err != nil {
		return err
	}
	if err := checkTime("token "+t.ID+": expires", t.Expires, true); err != nil {
		return err
	}
	if !t.Expires.After(t.CreatedAt) {
		return fmt.Errorf("token %s: expires %s is not after created_at %s", t.ID,
			t.Expires.UTC().Format(time.RFC3339Nano), t.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	if t.Role != "" && !t.Role.Valid() {
		return fmt.Errorf("token %s: role %q: want %q or %q", t.ID, t.Role, RoleGPU, RoleWitness)
	}
	if t.UsesAllowed < 0 || t.UsesAllowed > MaxTokenUses {
		return fmt.Errorf("token %s: uses_allowed %d: want 1..%d (0 only in tokens from before use counts)", t.ID, t.UsesAllowed, MaxTokenUses)
	}
	if t.UsesSpent < 0 || (t.UsesAllowed > 0 && t.UsesSpent > t.UsesAllowed) {
		return fmt.Errorf("token %s: uses_spent %d: want 0..uses_allowed (%d)", t.ID, t.UsesSpent, t.UsesAllowed)
	}
	if err := checkTime("token "+t.ID+": revoked_at", t.RevokedAt, false); err != nil {
		return err
	}
	if t.Revoked() {
		if err := checkReason("token "+t.ID+": revoked_by", t.RevokedBy); err != nil {
			return err
		}
	} else if t.RevokedBy != "" {
		return fmt.Errorf("token %s: revoked_by %q without revoked_at", t.ID, t.RevokedBy)
	}
	return nil
}

// validateNewToken checks a token that a CreateToken is about to store:
// the rules of validateToken and a lifetime of at most MaxTokenLifetime.
// A snapshot is not held to the lifetime, so that a state written before
// the rule (it may hold such a token) still restores; the token is pruned
// when it expires.
func validateNewToken(t Token) error {
	if err := validateToken(t); err != nil {
		return err
	}
	if t.UsesSpent != 0 || t.Revoked() {
		return fmt.Errorf("token %s: a new token has uses_spent 0 and is not revoked (uses_spent %d, revoked_at %s)", t.ID, t.UsesSpent, t.RevokedAt.UTC().Format(time.RFC3339))
	}
	if life := t.Expires.Sub(t.CreatedAt); life > MaxTokenLifetime {
		return fmt.Errorf("token %s: valid for %v (created_at %s, expires %s), at most %v allowed", t.ID, life,
			t.CreatedAt.UTC().Format(time.RFC3339), t.Expires.UTC().Format(time.RFC3339), MaxTokenLifetime)
	}
	return nil
}

// validEventKind reports whether s matches ^[a-z][a-z0-9-]{0,31}$.
func validEventKind(s string) bool {
	if len(s) == 0 || len(s) > maxEventKindLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
		case (c >= '0' && c <= '9' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validateEvent checks an event on its own. Index is not checked: Apply
// sets it, and the state's ordering of indexes is checked by
// validateEvents.
func validateEvent(e Event) error {
	if !validEventKind(e.Kind) {
		return fmt.Errorf("event kind %q: want ^[a-z][a-z0-9-]{0,31}$", e.Kind)
	}
	if e.Node != "" {
		if err := checkName("event "+e.Kind+": node", e.Node); err != nil {
			return err
		}
	}
	if err := checkReason("event "+e.Kind+": detail", e.Detail); err != nil {
		return err
	}
	return checkTime("event "+e.Kind+": time", e.Time, true)
}

// normalizeSettings returns the canonical form of a settings document: nil
// for absent or JSON null, otherwise the compacted object (no HTML
// escaping, so that encoding it again gives the same bytes). Anything else
// is an error.
func normalizeSettings(raw json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, nil
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, fmt.Errorf("settings %s: want a JSON object or null", abbrev(trimmed))
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if buf.Len() > MaxSettingsLen {
		return nil, fmt.Errorf("settings: %d bytes, at most %d allowed", buf.Len(), MaxSettingsLen)
	}
	return buf.Bytes(), nil
}

// abbrev quotes at most the first 64 bytes of b for an error message.
func abbrev(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
