package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// TokenInfo describes one join token of the replicated state, for `token
// list`. It never carries the secret or its hash.
type TokenInfo struct {
	ID string `json:"id"`
	// Role is the role the token admits; empty for a token from before
	// roles (it admits either role and never brings the CA key).
	Role    fsm.Role  `json:"role"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// UsesAllowed is how many joins it admits; 0 for a token from before
	// use counts, limited by its expiry only.
	UsesAllowed int `json:"uses_allowed"`
	// UsesSpent is how many joins it has admitted.
	UsesSpent int `json:"uses_spent"`
	// Revoked says whether `token revoke` withdrew it; RevokedAt and
	// RevokedBy say when and who.
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
	// State sums it up as the answering member saw it: TokenValid,
	// TokenExpired, TokenRevoked or TokenUsedUp.
	State string `json:"state"`
}

// The states of a join token in TokenInfo.State.
const (
	TokenValid   = "valid"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
	TokenUsedUp  = "used-up"
)

// TokenRevokeRequest asks to revoke the join token with that id.
type TokenRevokeRequest struct {
	ID string `json:"id"`
}

// TokenCreateRequest asks for a fresh join token: TokenRequest plus the
// number of joins it admits (0: DefaultTokenUses).
type TokenCreateRequest struct {
	TTL Duration `json:"ttl"`
	// Role is the role the token admits; empty means gpu.
	Role fsm.Role `json:"role,omitempty"`
	// Uses is how many joins it admits, 1..fsm.MaxTokenUses; 0 means
	// DefaultTokenUses.
	Uses int `json:"uses,omitempty"`
}

// ListTokens returns the join tokens the cluster holds (GET /v1/tokens),
// oldest first.
func (c *Client) ListTokens(ctx context.Context) ([]TokenInfo, error) {
	var ts []TokenInfo
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &ts)
	return ts, err
}

// RevokeToken revokes the join token with that id (POST
// /v1/tokens/revoke): it admits no node from then on.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/tokens/revoke", TokenRevokeRequest{ID: id}, nil)
}

// CreateTokenUses asks for a fresh join token valid for ttl (0: default)
// that admits role ("": gpu) and at most uses joins (0: default).
func (c *Client) CreateTokenUses(ctx context.Context, ttl time.Duration, role fsm.Role, uses int) (TokenResponse, error) {
	var t TokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens", TokenCreateRequest{TTL: Duration(ttl), Role: role, Uses: uses}, &t)
	return t, err
}
