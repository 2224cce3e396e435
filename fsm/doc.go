// Package fsm is newbieha's replicated state machine: the cluster state that
// Raft agrees on, the typed commands that change it, their wire encoding,
// and the raft.FSM (Apply, Snapshot, Restore) that applies them.
//
// The state (State) is small: the members, who is active and since which
// epoch, maintenance mode, the cluster settings document, join tokens (by
// hash only), the last HistoryLimit changes of active node and the last
// EventLimit other audit events (drills, VIP conflicts).
//
// # Commands
//
// A command is one of the structs UpsertMember, RemoveMember, SetActive,
// SetMaintenance, SetSettings, CreateToken, PruneTokens, RevokeToken and
// RecordEvent.
// The proposer calls Encode, which validates the command and frames it as
// one byte of Type, one byte of payload version and a JSON payload, and
// gives the bytes to raft.Apply. Everything a command needs, times included, travels
// inside it: Apply reads no clock, randomness or environment, so every
// replica computes the same state.
//
// # Apply
//
// (*FSM).Apply decodes the entry, checks it again (the rules of the command
// alone, then those that depend on the state: epochs, membership, roles)
// and returns a Result. A command that fails to decode or breaks a rule is
// rejected deterministically, with Result.Err wrapping one of the sentinel
// errors (ErrUnknownCommand, ErrMalformedCommand, ErrInvalidCommand,
// ErrStaleEpoch, ErrUnknownMember, ErrNotGPU, ErrTokenExists,
// ErrUnknownToken, ErrTokenUnusable) and the state
// unchanged, apart from State.LastIndex, which every entry advances. An
// unknown (type, version) whose type has IgnoreUnknownFlag set is skipped
// with a nil error; TypeRecordEvent carries the flag, so older nodes skip
// events, while this node applies version 1 and skips later versions.
//
// # Reading
//
// State returns a deep copy; Member looks one member up; Changed returns a
// channel closed after the next accepted command or restore, for watchers
// such as the cluster controller.
//
// # Snapshots
//
// A snapshot is the magic "NBHASNAP", a format version byte and the state
// as JSON. Restore reads and checks a whole snapshot into a new State
// before it swaps it in, so a bad snapshot leaves the current state as it
// was.
//
// The wire format, the versioning rules and the command registry are in
// docs/fsm.md.
package fsm
