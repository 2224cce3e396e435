package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Encode validates c and returns its log entry: byte 0 the type, byte 1 the
// payload version, then the JSON payload. Times are written in UTC and the
// settings document compacted, so equal commands encode to equal bytes.
// Commands may be passed as values or pointers (fsm.SetActive or
// *fsm.SetActive); any other Command implementation is rejected with
// ErrUnknownCommand.
func Encode(c Command) ([]byte, error) {
	v, err := canonical(c)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if newPayload(v.Type(), v.Version()) == nil {
		return nil, fmt.Errorf("encode %s version %d: %w", v.Type(), v.Version(), ErrUnknownCommand)
	}
	v = normalize(v)
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", v.Type(), err)
	}
	buf := bytes.NewBuffer(make([]byte, 0, 256))
	buf.WriteByte(byte(v.Type()))
	buf.WriteByte(v.Version())
	if err := writeJSON(buf, v); err != nil {
		return nil, fmt.Errorf("encode %s: %w", v.Type(), err)
	}
	return buf.Bytes(), nil
}

// Decode parses a log entry written by Encode and validates the command
// (the rules that do not depend on the state). It returns the command as a
// value, e.g. fsm.SetActive (never a pointer), with times in UTC. Errors
// wrap ErrUnknownCommand (unknown type or version), ErrMalformedCommand
// (bad framing or JSON) or ErrInvalidCommand (a rule broken). Decode never
// panics, whatever b holds.
//
// Unknown JSON fields are ignored: a newer node may add an optional field
// without bumping the version, and older nodes read the entry as before
// (docs/fsm.md, "Versioning"). Trailing bytes after the JSON object and
// values of the wrong JSON type are errors.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("decode: entry of %d bytes, want at least 2 (type, version): %w", len(b), ErrMalformedCommand)
	}
	t, ver := Type(b[0]), b[1]
	p := newPayload(t, ver)
	if p == nil {
		if !knownType(t) {
			return nil, fmt.Errorf("decode: type %d: %w", uint8(t), ErrUnknownCommand)
		}
		return nil, fmt.Errorf("decode %s: version %d: %w", t, ver, ErrUnknownCommand)
	}
	if err := decodeJSONObject(b[2:], p); err != nil {
		return nil, fmt.Errorf("decode %s version %d: %w: %w", t, ver, ErrMalformedCommand, err)
	}
	c, err := canonical(p)
	if err != nil { // unreachable: newPayload returns only known types
		return nil, fmt.Errorf("decode %s version %d: %w", t, ver, err)
	}
	c = normalize(c)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return c, nil
}

// newPayload returns a pointer to a zero payload for the (type, version)
// pair, or nil if this node does not know it. This switch is the decode
// registry; New registers the matching handlers, and a test checks that
// the two agree.
//
// When a type gets version 2, keep its version 1 case here, decoding into
// the old struct and converting it to the new one in canonical, and tag
// that code "// COMPAT(vX): ..." with the release (docs/fsm.md).
func newPayload(t Type, v uint8) Command {
	switch {
	case t == TypeUpsertMember && v == versionUpsertMember:
		return &UpsertMember{}
	case t == TypeRemoveMember && v == versionRemoveMember:
		return &RemoveMember{}
	case t == TypeSetActive && v == versionSetActive:
		return &SetActive{}
	case t == TypeSetMaintenance && v == versionSetMaintenance:
		return &SetMaintenance{}
	case t == TypeSetSettings && v == versionSetSettings:
		return &SetSettings{}
	case t == TypeCreateToken && v == versionCreateToken:
		return &CreateToken{}
	case t == TypePruneTokens && v == versionPruneTokens:
		return &PruneTokens{}
	case t == TypeRecordEvent && v == versionRecordEvent:
		return &RecordEvent{}
	case t == TypeRevokeToken && v == versionRevokeToken:
		return &RevokeToken{}
	}
	return nil
}

// knownTypes lists every type newPayload knows, in wire order.
func knownTypes() []Type {
	return []Type{TypeUpsertMember, TypeRemoveMember, TypeSetActive, TypeSetMaintenance,
		TypeSetSettings, TypeCreateToken, TypePruneTokens, TypeRevokeToken, TypeRecordEvent}
}

// knownType reports whether this node knows t in some version.
func knownType(t Type) bool {
	for _, k := range knownTypes() {
		if k == t {
			return true
		}
	}
	return false
}

// canonical returns c as a value of one of the package's command structs.
func canonical(c Command) (Command, error) {
	switch v := c.(type) {
	case UpsertMember, RemoveMember, SetActive, SetMaintenance, SetSettings, CreateToken, PruneTokens, RevokeToken, RecordEvent:
		return v, nil
	case *UpsertMember:
		if v != nil {
			return *v, nil
		}
	case *RemoveMember:
		if v != nil {
			return *v, nil
		}
	case *SetActive:
		if v != nil {
			return *v, nil
		}
	case *SetMaintenance:
		if v != nil {
			return *v, nil
		}
	case *SetSettings:
		if v != nil {
			return *v, nil
		}
	case *CreateToken:
		if v != nil {
			return *v, nil
		}
	case *PruneTokens:
		if v != nil {
			return *v, nil
		}
	case *RevokeToken:
		if v != nil {
			return *v, nil
		}
	case *RecordEvent:
		if v != nil {
			return *v, nil
		}
	case nil:
		return nil, fmt.Errorf("nil command: %w", ErrUnknownCommand)
	default:
		return nil, fmt.Errorf("%T is not one of package fsm's command types: %w", c, ErrUnknownCommand)
	}
	return nil, fmt.Errorf("nil %T: %w", c, ErrUnknownCommand)
}

// normalize returns c with every time in UTC, the settings document
// compacted and an event's Index zeroed (Apply sets it), so that the state
// is the same on every replica whatever offset the proposer wrote, and
// encoding is canonical. A settings value that is not valid is left as is
// for Validate to report.
func normalize(c Command) Command {
	switch v := c.(type) {
	case UpsertMember:
		v.Member.JoinedAt = v.Member.JoinedAt.UTC()
		return v
	case SetActive:
		v.Time = v.Time.UTC()
		return v
	case SetMaintenance:
		v.Time = v.Time.UTC()
		return v
	case SetSettings:
		if s, err := normalizeSettings(v.Settings); err == nil {
			v.Settings = s
		}
		return v
	case CreateToken:
		v.Token.CreatedAt = v.Token.CreatedAt.UTC()
		v.Token.Expires = v.Token.Expires.UTC()
		v.Token.RevokedAt = v.Token.RevokedAt.UTC()
		return v
	case PruneTokens:
		v.Now = v.Now.UTC()
		return v
	case RevokeToken:
		v.Time = v.Time.UTC()
		return v
	case RecordEvent:
		v.Event.Time = v.Event.Time.UTC()
		v.Event.Index = 0
		return v
	}
	return c
}

// writeJSON appends v as compact JSON without HTML escaping and without
// the encoder's trailing newline.
func writeJSON(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // the newline Encode appends
	return nil
}

// decodeJSONObject decodes exactly one JSON object from b into v: b must
// hold an object (not null, not an array) and nothing but white space
// after it.
func decodeJSONObject(b []byte, v any) error {
	rest := bytes.TrimLeft(b, " \t\r\n")
	if len(rest) == 0 {
		return errors.New("empty payload, want a JSON object")
	}
	if rest[0] != '{' {
		return fmt.Errorf("payload starts with %s, want a JSON object", abbrev(rest[:1]))
	}
	dec := json.NewDecoder(bytes.NewReader(rest))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("trailing data after the JSON object: %w", err)
		}
		return fmt.Errorf("trailing data after the JSON object: %v", tok)
	}
	return nil
}
