package fsm

import "errors"

// Sentinel errors. Every error the package returns for a rejected command or
// a bad snapshot wraps exactly one of them, so callers test with errors.Is
// and read the wrapping message for the field and value at fault.
var (
	// ErrUnknownCommand means the entry's (type, version) pair is not one
	// this node knows and the type does not carry IgnoreUnknownFlag.
	ErrUnknownCommand = errors.New("unknown command")

	// ErrMalformedCommand means the entry could not be decoded: too short,
	// not a JSON object, a JSON value of the wrong type, or trailing bytes.
	ErrMalformedCommand = errors.New("malformed command")

	// ErrInvalidCommand means the command decoded but breaks a rule of its
	// own (a bad name, address, time, hash, ...), independent of the state.
	ErrInvalidCommand = errors.New("invalid command")

	// ErrStaleEpoch means a SetActive carried an epoch that is not greater
	// than the current one.
	ErrStaleEpoch = errors.New("stale epoch")

	// ErrUnknownMember means a command named a member that is not present.
	ErrUnknownMember = errors.New("unknown member")

	// ErrNotGPU means a command would make a non-GPU member (a witness) the
	// active node.
	ErrNotGPU = errors.New("member is not a gpu node")

	// ErrTokenExists means a CreateToken reused the ID of a stored token.
	// Token IDs are random; the caller should draw a new one and retry.
	ErrTokenExists = errors.New("token already exists")

	// ErrUnknownToken means a command named a join token that is not
	// stored (never created, or pruned after it expired).
	ErrUnknownToken = errors.New("unknown token")

	// ErrTokenUnusable means an UpsertMember named a join token that does
	// not admit a join at the member's join time: expired, revoked or
	// used up.
	ErrTokenUnusable = errors.New("token expired, revoked or used up")

	// ErrApplyPanic means a handler panicked. It is a bug: the panic was
	// recovered so that every replica rejects the entry instead of crashing
	// at once, and it was logged with its stack.
	ErrApplyPanic = errors.New("internal error while applying command")

	// ErrBadSnapshot means Restore was given data it cannot use: a wrong
	// header, an unknown format version, bad JSON, or a state that breaks
	// a rule. The current state is left as it was.
	ErrBadSnapshot = errors.New("bad snapshot")
)
