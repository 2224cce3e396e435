package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// Snapshot format: the 8 bytes of SnapshotMagic, one byte of format
// version, then the State as one JSON object.
const (
	// SnapshotMagic starts every snapshot.
	SnapshotMagic = "NBHASNAP"
	// SnapshotVersion is the snapshot format this node writes and reads.
	SnapshotVersion uint8 = 1
	// MaxSnapshotSize bounds what Restore reads into memory. The state is
	// a few members, tokens, HistoryLimit transitions and EventLimit
	// events: under 16 MiB even with every reason and detail at its longest
	// and fully escaped, plus the settings document (MaxSettingsLen).
	MaxSnapshotSize = 64 << 20
)

// snapshotHeaderLen is the length of magic plus version.
const snapshotHeaderLen = len(SnapshotMagic) + 1

// Snapshot captures a deep copy of the state. The copy is immutable, so
// Persist may run while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{state: f.state.clone()}, nil
}

// snapshot is a point-in-time copy of the state, written by Persist.
type snapshot struct {
	state State
}

// Persist writes the header and the state to sink and closes it, or
// cancels it if any write fails.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		if cerr := sink.Cancel(); cerr != nil {
			return errors.Join(err, fmt.Errorf("cancel snapshot sink: %w", cerr))
		}
		return err
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot sink: %w", err)
	}
	return nil
}

// write encodes the state, then writes the header and the body, checking
// each write.
func (s *snapshot) write(w io.Writer) error {
	body, err := marshalState(s.state)
	if err != nil {
		return fmt.Errorf("encode snapshot state: %w", err)
	}
	header := append([]byte(SnapshotMagic), SnapshotVersion)
	if err := writeAll(w, header); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	if err := writeAll(w, body); err != nil {
		return fmt.Errorf("write snapshot state (%d bytes): %w", len(body), err)
	}
	return nil
}

// writeAll writes b, treating a short write without an error as
// io.ErrShortWrite.
func writeAll(w io.Writer, b []byte) error {
	n, err := w.Write(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return io.ErrShortWrite
	}
	return nil
}

// Release does nothing: the snapshot holds only memory.
func (s *snapshot) Release() {}

// marshalState encodes s as the snapshot body.
func marshalState(s State) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, s); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// marshalSnapshot returns a whole snapshot of s: header and body.
func marshalSnapshot(s State) ([]byte, error) {
	body, err := marshalState(s)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(SnapshotMagic), SnapshotVersion), body...), nil
}

// unmarshalSnapshot parses and checks a whole snapshot into a new State.
// Errors wrap ErrBadSnapshot and say what is wrong.
func unmarshalSnapshot(b []byte) (State, error) {
	if len(b) < snapshotHeaderLen {
		return State{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBadSnapshot, len(b), snapshotHeaderLen)
	}
	if magic := b[:len(SnapshotMagic)]; string(magic) != SnapshotMagic {
		return State{}, fmt.Errorf("%w: magic %s, want %q", ErrBadSnapshot, abbrev(magic), SnapshotMagic)
	}
	// When format 2 exists, keep reading format 1 here, tagged COMPAT(vX).
	if v := b[len(SnapshotMagic)]; v != SnapshotVersion {
		return State{}, fmt.Errorf("%w: format version %d, this node reads %d", ErrBadSnapshot, v, SnapshotVersion)
	}
	var s State
	if err := decodeJSONObject(b[snapshotHeaderLen:], &s); err != nil {
		return State{}, fmt.Errorf("%w: state: %w", ErrBadSnapshot, err)
	}
	if err := normalizeState(&s); err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if err := validateState(&s); err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	return s, nil
}

// Restore replaces the state with the snapshot read from rc, and closes
// rc. The snapshot is read and checked completely into a new State first;
// only then is it swapped in, under the lock readers take. On any error the
// current state is left as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }() // raft closes it as well; a second Close is harmless
	b, err := io.ReadAll(io.LimitReader(rc, MaxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("restore: read snapshot: %w", err)
	}
	if len(b) > MaxSnapshotSize {
		return fmt.Errorf("restore: %w: larger than %d bytes", ErrBadSnapshot, MaxSnapshotSize)
	}
	s, err := unmarshalSnapshot(b)
	if err != nil {
		f.logger.Error("snapshot rejected; state unchanged", "error", err)
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	f.state = s
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	f.logger.Info("restored snapshot", "last_index", s.LastIndex, "members", len(s.Members),
		"active", s.Active.Node, "epoch", s.Active.Epoch)
	return nil
}
