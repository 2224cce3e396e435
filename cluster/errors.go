package cluster

import "errors"

// Sentinel errors of the cluster package. Compare with errors.Is.
var (
	// ErrNotLeader means the call needs the leader and this node is not it.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader means no leader is known: the cluster has no quorum, or
	// an election is in progress.
	ErrNoLeader = errors.New("no raft leader (no quorum or election in progress)")
	// ErrTokenInvalid means a join token is unknown, malformed or wrong.
	ErrTokenInvalid = errors.New("join token invalid")
	// ErrTokenExpired means a join token was valid but has expired.
	ErrTokenExpired = errors.New("join token expired")
	// ErrUnauthorized means a remote call came without a cluster certificate.
	ErrUnauthorized = errors.New("a cluster client certificate is required")
	// ErrAlreadyInitialized means init or join found a config in the data dir.
	ErrAlreadyInitialized = errors.New("data dir already holds a node config")
	// ErrMemberExists means a join names a current member, or an address
	// one uses; that member must be removed first.
	ErrMemberExists = errors.New("a current member has that name or address")
	// ErrUnknownMember means a named member is not in the cluster.
	ErrUnknownMember = errors.New("unknown member")
	// ErrBadRequest means an API request was malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrNeedsForce means a removal would stop the service or cost the
	// quorum; the message says which, and force does it anyway.
	ErrNeedsForce = errors.New("refused without force")
	// ErrForbidden means the caller's identity may not make this call.
	ErrForbidden = errors.New("forbidden")
)
