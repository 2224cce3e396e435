package gossip

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Wire format. Every user message memberlist hands to the delegate starts
// with a type byte. memberlist frames, authenticates and encrypts it, so the
// format only has to be unambiguous and safe to decode, not secret.
//
//	state:  0x01 | flags (1 byte) | uvarint seq | uvarint len(origin) | origin | payload
//	bundle: 0x02 | uvarint count | count × (uvarint len(state) | state)
//
// flags bit 0 means the payload is DEFLATE-compressed (RFC 1951); every other
// bit must be zero. A new incompatible layout gets a new type byte.
const (
	msgState  byte = 0x01
	msgBundle byte = 0x02

	flagDeflate byte = 0x01
	knownFlags       = flagDeflate
)

const (
	// MaxStateSize is the largest state blob SetLocalState accepts and the
	// largest a received message may decompress to. The expected blob (check
	// results and telemetry for up to 8 GPUs as JSON) is 2-4 KB.
	MaxStateSize = 32 << 10

	// MaxNameLen is the longest node name the codec carries.
	MaxNameLen = 255

	// maxOrigins bounds how many nodes' states one node keeps and one bundle
	// may carry; far above any real cluster of this product (three nodes).
	maxOrigins = 256

	// compressMin is the payload size below which compression is not tried.
	compressMin = 128

	// maxStateMsg bounds an encoded state message: header plus a payload
	// that DEFLATE expanded (at most 5 bytes per 64 KiB stored block, so a
	// few bytes for MaxStateSize; we only keep compression when it helps).
	maxStateMsg = 1 + 1 + binary.MaxVarintLen64 + binary.MaxVarintLen64 + MaxNameLen + MaxStateSize

	// maxBundle bounds an encoded bundle (push/pull state).
	maxBundle = 1 + binary.MaxVarintLen64 + maxOrigins*(binary.MaxVarintLen64+maxStateMsg)
)

// errMalformed is wrapped by every decode error.
var errMalformed = errors.New("malformed gossip message")

// stateMsg is one node's state as carried on the wire.
type stateMsg struct {
	Origin  string // node name the state belongs to
	Seq     uint64 // per-origin version; higher wins
	Payload []byte // the state blob, uncompressed
}

// encoder encodes state messages, reusing one DEFLATE writer (NewWriter
// allocates about 1 MB of tables). The writer is BestSpeed: every Reset
// of a DefaultCompression writer clears its 640 KB of hash chains, which
// an idle agent then kept resident (+690 KB measured, against +190 KB for
// BestSpeed), for states a few KB long that compress about as well (a
// 2.9 KB health report: 132 against 151 bytes). Not safe for concurrent
// use.
type encoder struct {
	fw  *flate.Writer
	buf bytes.Buffer
}

// encodeState returns the wire form of m. The payload is compressed when
// that makes it smaller.
func (e *encoder) encodeState(m stateMsg) ([]byte, error) {
	if err := validName(m.Origin); err != nil {
		return nil, err
	}
	if len(m.Payload) > MaxStateSize {
		return nil, fmt.Errorf("state of %d bytes: %w (limit %d)", len(m.Payload), ErrStateTooLarge, MaxStateSize)
	}
	flags, payload := byte(0), m.Payload
	if len(m.Payload) >= compressMin {
		e.buf.Reset()
		if e.fw == nil {
			fw, err := flate.NewWriter(&e.buf, flate.BestSpeed)
			if err != nil {
				return nil, fmt.Errorf("deflate writer: %w", err)
			}
			e.fw = fw
		} else {
			e.fw.Reset(&e.buf)
		}
		if _, err := e.fw.Write(m.Payload); err != nil {
			return nil, fmt.Errorf("deflate state: %w", err)
		}
		if err := e.fw.Close(); err != nil {
			return nil, fmt.Errorf("deflate state: %w", err)
		}
		if e.buf.Len() < len(m.Payload) {
			flags, payload = flagDeflate, e.buf.Bytes()
		}
	}
	out := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(m.Origin)+len(payload))
	out = append(out, msgState, flags)
	out = binary.AppendUvarint(out, m.Seq)
	out = binary.AppendUvarint(out, uint64(len(m.Origin)))
	out = append(out, m.Origin...)
	out = append(out, payload...)
	return out, nil
}

// decodeState parses a state message. It never panics and never allocates
// more than MaxStateSize for the payload, whatever the input.
func decodeState(b []byte) (stateMsg, error) {
	flags, seq, origin, payload, err := decodeStateHeader(b)
	if err != nil {
		return stateMsg{}, err
	}
	if flags&flagDeflate != 0 {
		p, err := inflate(payload)
		if err != nil {
			return stateMsg{}, fmt.Errorf("%w: state of %s: %w", errMalformed, origin, err)
		}
		payload = p
	} else {
		if len(payload) > MaxStateSize {
			return stateMsg{}, fmt.Errorf("%w: state of %d bytes (limit %d)", errMalformed, len(payload), MaxStateSize)
		}
		payload = bytes.Clone(payload)
	}
	if payload == nil {
		payload = []byte{}
	}
	return stateMsg{Origin: origin, Seq: seq, Payload: payload}, nil
}

// decodeStateHeader parses a state message up to its payload, which it
// returns as it is on the wire (aliasing b, still compressed when flags
// says so). It is what decodeState reads before it inflates anything.
func decodeStateHeader(b []byte) (flags byte, seq uint64, origin string, payload []byte, err error) {
	if len(b) > maxStateMsg {
		return 0, 0, "", nil, fmt.Errorf("%w: state message of %d bytes (limit %d)", errMalformed, len(b), maxStateMsg)
	}
	if len(b) < 2 || b[0] != msgState {
		return 0, 0, "", nil, fmt.Errorf("%w: not a state message", errMalformed)
	}
	flags = b[1]
	if flags&^knownFlags != 0 {
		return 0, 0, "", nil, fmt.Errorf("%w: unknown flags %#02x", errMalformed, flags)
	}
	rest := b[2:]
	seq, n := binary.Uvarint(rest)
	if n <= 0 {
		return 0, 0, "", nil, fmt.Errorf("%w: bad sequence number", errMalformed)
	}
	rest = rest[n:]
	nameLen, n := binary.Uvarint(rest)
	if n <= 0 || nameLen > MaxNameLen || nameLen > uint64(len(rest)-n) {
		return 0, 0, "", nil, fmt.Errorf("%w: bad origin length", errMalformed)
	}
	rest = rest[n:]
	origin = string(rest[:nameLen])
	if err := validName(origin); err != nil {
		return 0, 0, "", nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return flags, seq, origin, rest[nameLen:], nil
}

// inflate decompresses a DEFLATE stream, refusing output over MaxStateSize.
func inflate(b []byte) ([]byte, error) {
	fr := flate.NewReader(bytes.NewReader(b))
	defer fr.Close()
	out, err := io.ReadAll(io.LimitReader(fr, MaxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	if len(out) > MaxStateSize {
		return nil, fmt.Errorf("inflates past %d bytes", MaxStateSize)
	}
	return out, nil
}

// encodeBundle frames already-encoded state messages for push/pull.
func encodeBundle(states [][]byte) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, s := range states {
		size += binary.MaxVarintLen64 + len(s)
	}
	out := make([]byte, 0, size)
	out = append(out, msgBundle)
	out = binary.AppendUvarint(out, uint64(len(states)))
	for _, s := range states {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	return out
}

// decodeBundle splits a bundle into its state messages (still encoded; the
// returned slices alias b). It checks framing only; each element is decoded
// with decodeState.
func decodeBundle(b []byte) ([][]byte, error) {
	if len(b) > maxBundle {
		return nil, fmt.Errorf("%w: bundle of %d bytes (limit %d)", errMalformed, len(b), maxBundle)
	}
	if len(b) < 1 || b[0] != msgBundle {
		return nil, fmt.Errorf("%w: not a bundle", errMalformed)
	}
	rest := b[1:]
	count, n := binary.Uvarint(rest)
	if n <= 0 || count > maxOrigins {
		return nil, fmt.Errorf("%w: bad bundle count", errMalformed)
	}
	rest = rest[n:]
	out := make([][]byte, 0, count)
	for i := uint64(0); i < count; i++ {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return nil, fmt.Errorf("%w: bad length of bundle element %d", errMalformed, i)
		}
		rest = rest[n:]
		out = append(out, rest[:l])
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after bundle", errMalformed, len(rest))
	}
	return out, nil
}

// validName reports whether s can be a node name on the wire.
func validName(s string) error {
	if s == "" {
		return errors.New("empty node name")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("node name of %d bytes (limit %d)", len(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("node name %q is not UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("node name %q has a control character", s)
		}
	}
	return nil
}
