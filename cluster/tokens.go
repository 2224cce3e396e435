package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// DefaultTokenUses is how many joins a token admits unless told otherwise
// (`token create --uses`): one, so that a leaked token admits at most the
// node it was made for.
const DefaultTokenUses = 1

// ErrUnknownToken means a token id names no token of the replicated state
// (never created, or pruned after it expired). It answers an operator
// (`token revoke`), never a joining node: a join with an unknown token is
// ErrTokenInvalid like any other bad token.
var ErrUnknownToken = errors.New("unknown join token")

// listTokens returns the join tokens in the state this node has applied,
// oldest first, without their secret hashes. Expired tokens stay listed
// until the next CreateToken prunes them.
func (a *Agent) listTokens() []TokenInfo {
	st := a.node.fsm.State()
	now := a.cfg.Now()
	out := make([]TokenInfo, 0, len(st.Tokens))
	for _, t := range st.Tokens {
		out = append(out, tokenInfo(t, now))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// tokenInfo describes t as seen at now.
func tokenInfo(t fsm.Token, now time.Time) TokenInfo {
	info := TokenInfo{
		ID: t.ID, Role: t.Role, Created: t.CreatedAt, Expires: t.Expires,
		UsesAllowed: t.UsesAllowed, UsesSpent: t.UsesSpent,
		Revoked: t.Revoked(), RevokedAt: t.RevokedAt, RevokedBy: t.RevokedBy,
	}
	switch {
	case t.Revoked():
		info.State = TokenRevoked
	case t.UsedUp():
		info.State = TokenUsedUp
	case !now.Before(t.Expires):
		info.State = TokenExpired
	default:
		info.State = TokenValid
	}
	return info
}

// revokeToken commits a RevokeToken for id, naming this member as the one
// that revoked it; the operator API records who asked in its audit event.
func (a *Agent) revokeToken(ctx context.Context, id string) error {
	return a.revokeTokenBy(ctx, id, a.Name())
}

// revokeTokenBy commits a RevokeToken for id, recording by (an operator's
// name, root@NODE) as who revoked it. An id that is not a token id is
// ErrBadRequest; one the state does not hold is ErrUnknownToken.
func (a *Agent) revokeTokenBy(ctx context.Context, id, by string) error {
	cmd := fsm.RevokeToken{ID: id, Time: a.cfg.Now().UTC(), By: by}
	if err := cmd.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if _, ok := a.node.fsm.State().Tokens[id]; !ok {
		return fmt.Errorf("%w: %s (see `newbieha token list`)", ErrUnknownToken, id)
	}
	if err := a.apply(ctx, cmd); err != nil {
		// The token was pruned between the look-up and the commit; a
		// refusal on the leader comes back as its message only.
		if errors.Is(err, fsm.ErrUnknownToken) || strings.Contains(err.Error(), fsm.ErrUnknownToken.Error()) {
			return fmt.Errorf("%w: %s", ErrUnknownToken, id)
		}
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// createTokenUses creates and commits a join token valid for ttl that
// admits role and at most uses joins (0: DefaultTokenUses). It is
// CreateToken with a use count: the operator API's `POST /v1/tokens` is
// meant to call it with TokenCreateRequest.Uses.
func (a *Agent) createTokenUses(ctx context.Context, ttl time.Duration, role fsm.Role, uses int) (TokenResponse, error) {
	if uses == 0 {
		uses = DefaultTokenUses
	}
	if uses < 1 || uses > fsm.MaxTokenUses {
		return TokenResponse{}, fmt.Errorf("%w: uses %d must be between 1 and %d", ErrBadRequest, uses, fsm.MaxTokenUses)
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return TokenResponse{}, fmt.Errorf("%w: ttl %v must be between 1s and %v", ErrBadRequest, ttl, MaxTokenTTL)
	}
	if !role.Valid() {
		return TokenResponse{}, fmt.Errorf("%w: role %q is not gpu or witness", ErrBadRequest, role)
	}
	tok, err := pki.NewToken(pki.Hash(a.bundle.CA.Cert))
	if err != nil {
		return TokenResponse{}, err
	}
	now := a.cfg.Now().UTC()
	exp := now.Add(ttl)
	cmd := fsm.CreateToken{Token: fsm.Token{ID: tok.ID, SecretHash: tok.SecretHash(), CreatedAt: now, Expires: exp, Role: role, UsesAllowed: uses}}
	if err := a.apply(ctx, cmd); err != nil {
		return TokenResponse{}, fmt.Errorf("commit token: %w", err)
	}
	return TokenResponse{Token: tok.String(), Expires: exp, Role: role}, nil
}
