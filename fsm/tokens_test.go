package fsm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// countedToken is a gpu token created at t0, valid for an hour, that
// admits uses joins.
func countedToken(id string, uses int) Token {
	t := testToken(id, time.Hour)
	t.Role, t.UsesAllowed = RoleGPU, uses
	return t
}

// joinWith is the member record a join admitted by token id writes, at
// t0+d.
func joinWith(name, ip, id string, d time.Duration) UpsertMember {
	m := gpuMember(name, ip)
	m.JoinedAt = at(d)
	return UpsertMember{Member: m, TokenID: id}
}

func TestApply_TokenUsesRevokeAndPrune(t *testing.T) {
	revoke := RevokeToken{ID: "ab12cd", Time: at(time.Minute), By: "root@gpu1"}
	tests := []struct {
		name  string
		setup []Command
		cmd   Command
		raw   bool  // frame cmd without validating it
		want  error // nil: accepted
		check func(t *testing.T, s State)
	}{
		// Use counts.
		{name: "join spends a use", setup: []Command{CreateToken{Token: countedToken("ab12cd", 2)}},
			cmd: joinWith("gpu1", "10.0.0.1", "ab12cd", time.Minute),
			check: func(t *testing.T, s State) {
				if tok := s.Tokens["ab12cd"]; tok.UsesSpent != 1 || tok.UsedUp() {
					t.Fatalf("token %+v, want 1 of 2 uses spent", tok)
				}
				if _, ok := s.Members["gpu1"]; !ok {
					t.Fatal("member not recorded")
				}
			}},
		{name: "last use spent", setup: []Command{CreateToken{Token: countedToken("ab12cd", 2)}, joinWith("gpu1", "10.0.0.1", "ab12cd", time.Minute)},
			cmd: joinWith("gpu2", "10.0.0.2", "ab12cd", 2*time.Minute),
			check: func(t *testing.T, s State) {
				if tok := s.Tokens["ab12cd"]; tok.UsesSpent != 2 || !tok.UsedUp() || tok.Admits(at(3*time.Minute)) {
					t.Fatalf("token %+v, want used up", tok)
				}
			}},
		{name: "used up", setup: []Command{CreateToken{Token: countedToken("ab12cd", 1)}, joinWith("gpu1", "10.0.0.1", "ab12cd", time.Minute)},
			cmd: joinWith("gpu2", "10.0.0.2", "ab12cd", 2*time.Minute), want: ErrTokenUnusable},
		{name: "unknown token", setup: []Command{CreateToken{Token: countedToken("ab12cd", 1)}},
			cmd: joinWith("gpu1", "10.0.0.1", "zz99zz", time.Minute), want: ErrUnknownToken},
		{name: "expired by the join's own time", setup: []Command{CreateToken{Token: countedToken("ab12cd", 5)}},
			cmd: joinWith("gpu1", "10.0.0.1", "ab12cd", time.Hour), want: ErrTokenUnusable},
		{name: "valid until the last nanosecond", setup: []Command{CreateToken{Token: countedToken("ab12cd", 5)}},
			cmd: joinWith("gpu1", "10.0.0.1", "ab12cd", time.Hour-time.Nanosecond)},
		{name: "revoked", setup: []Command{CreateToken{Token: countedToken("ab12cd", 5)}, revoke},
			cmd: joinWith("gpu1", "10.0.0.1", "ab12cd", 2*time.Minute), want: ErrTokenUnusable},
		{name: "refused join changes nothing else", setup: []Command{CreateToken{Token: countedToken("ab12cd", 1)}, joinWith("gpu1", "10.0.0.1", "ab12cd", time.Minute)},
			cmd: joinWith("gpu1", "10.0.0.11", "ab12cd", 2*time.Minute), want: ErrTokenUnusable},
		{name: "token id without join time", setup: []Command{CreateToken{Token: countedToken("ab12cd", 1)}}, raw: true,
			cmd: func() Command {
				c := joinWith("gpu1", "10.0.0.1", "ab12cd", 0)
				c.Member.JoinedAt = time.Time{}
				return c
			}(), want: ErrInvalidCommand},
		{name: "bad token id", setup: []Command{CreateToken{Token: countedToken("ab12cd", 1)}}, raw: true,
			cmd: joinWith("gpu1", "10.0.0.1", "AB12CD", time.Minute), want: ErrInvalidCommand},
		{name: "token from before use counts has no limit", setup: []Command{CreateToken{Token: testToken("ab12cd", time.Hour)},
			joinWith("gpu1", "10.0.0.1", "ab12cd", time.Minute), joinWith("gpu2", "10.0.0.2", "ab12cd", time.Minute)},
			cmd: UpsertMember{Member: witnessMember(), TokenID: "ab12cd"},
			check: func(t *testing.T, s State) {
				if tok := s.Tokens["ab12cd"]; tok.UsesSpent != 3 || tok.UsedUp() || len(s.Members) != 3 {
					t.Fatalf("token %+v, %d members; want 3 uses counted, no limit", tok, len(s.Members))
				}
			}},
		{name: "record without token spends nothing", setup: []Command{CreateToken{Token: countedToken("ab12cd", 1)}},
			cmd: UpsertMember{Member: gpuMember("gpu1", "10.0.0.1")},
			check: func(t *testing.T, s State) {
				if tok := s.Tokens["ab12cd"]; tok.UsesSpent != 0 {
					t.Fatalf("token %+v, want no use spent", tok)
				}
			}},
		{name: "uses over the maximum", raw: true, cmd: CreateToken{Token: countedToken("ab12cd", MaxTokenUses+1)}, want: ErrInvalidCommand},
		{name: "negative uses", raw: true, cmd: CreateToken{Token: countedToken("ab12cd", -1)}, want: ErrInvalidCommand},
		{name: "maximum uses", cmd: CreateToken{Token: countedToken("ab12cd", MaxTokenUses)}},
		{name: "new token with uses spent", raw: true,
			cmd: func() Command { tok := countedToken("ab12cd", 3); tok.UsesSpent = 1; return CreateToken{Token: tok} }(), want: ErrInvalidCommand},
		{name: "new token already revoked", raw: true,
			cmd: func() Command {
				tok := countedToken("ab12cd", 3)
				tok.RevokedAt, tok.RevokedBy = t0, "x"
				return CreateToken{Token: tok}
			}(), want: ErrInvalidCommand},

		// RevokeToken.
		{name: "revoke", setup: []Command{CreateToken{Token: countedToken("ab12cd", 3)}}, cmd: revoke,
			check: func(t *testing.T, s State) {
				tok := s.Tokens["ab12cd"]
				if !tok.Revoked() || tok.RevokedAt != at(time.Minute) || tok.RevokedBy != "root@gpu1" || tok.Admits(at(2*time.Minute)) {
					t.Fatalf("token %+v, want revoked at t0+1m by root@gpu1", tok)
				}
			}},
		{name: "revoke again keeps the first", setup: []Command{CreateToken{Token: countedToken("ab12cd", 3)}, revoke},
			cmd: RevokeToken{ID: "ab12cd", Time: at(time.Hour), By: "alice"},
			check: func(t *testing.T, s State) {
				if tok := s.Tokens["ab12cd"]; tok.RevokedAt != at(time.Minute) || tok.RevokedBy != "root@gpu1" {
					t.Fatalf("token %+v", tok)
				}
			}},
		{name: "revoke unknown", setup: []Command{CreateToken{Token: countedToken("ab12cd", 3)}},
			cmd: RevokeToken{ID: "zz99zz", Time: t0, By: "root@gpu1"}, want: ErrUnknownToken},
		{name: "revoke bad id", raw: true, cmd: RevokeToken{ID: "ab12c", Time: t0, By: "root@gpu1"}, want: ErrInvalidCommand},
		{name: "revoke zero time", raw: true, cmd: RevokeToken{ID: "ab12cd", By: "root@gpu1"}, want: ErrInvalidCommand},
		{name: "revoke without by", raw: true, cmd: RevokeToken{ID: "ab12cd", Time: t0}, want: ErrInvalidCommand},

		// Pruning on CreateToken, by the new token's CreatedAt.
		{name: "create prunes expired", setup: []Command{
			CreateToken{Token: testToken("aaaaaa", time.Hour)},
			CreateToken{Token: testToken("bbbbbb", 2*time.Hour)},
			CreateToken{Token: testToken("cccccc", 3*time.Hour)},
		}, cmd: CreateToken{Token: Token{ID: "dddddd", SecretHash: testHash, CreatedAt: at(2 * time.Hour), Expires: at(4 * time.Hour), UsesAllowed: 1}},
			check: func(t *testing.T, s State) {
				_, c := s.Tokens["cccccc"]
				_, d := s.Tokens["dddddd"]
				if !c || !d || len(s.Tokens) != 2 {
					t.Fatalf("tokens %#v, want cccccc and dddddd (expiry at the new token's creation is expired)", s.Tokens)
				}
			}},
		{name: "create prunes revoked and used up once expired", setup: []Command{
			CreateToken{Token: countedToken("aaaaaa", 1)},
			joinWith("gpu1", "10.0.0.1", "aaaaaa", time.Minute),
			CreateToken{Token: countedToken("bbbbbb", 1)},
			RevokeToken{ID: "bbbbbb", Time: at(time.Minute), By: "root@gpu1"},
		}, cmd: CreateToken{Token: Token{ID: "dddddd", SecretHash: testHash, CreatedAt: at(time.Hour), Expires: at(2 * time.Hour), UsesAllowed: 1}},
			check: func(t *testing.T, s State) {
				if _, ok := s.Tokens["dddddd"]; !ok || len(s.Tokens) != 1 {
					t.Fatalf("tokens %#v, want only dddddd", s.Tokens)
				}
			}},
		{name: "refused create prunes nothing", setup: []Command{
			CreateToken{Token: testToken("aaaaaa", time.Hour)},
			CreateToken{Token: testToken("bbbbbb", 3*time.Hour)},
		}, cmd: CreateToken{Token: Token{ID: "bbbbbb", SecretHash: testHash, CreatedAt: at(2 * time.Hour), Expires: at(4 * time.Hour)}}, want: ErrTokenExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(t)
			for i, c := range tt.setup {
				mustApply(t, f, uint64(i+1), c)
			}
			before := f.State()
			idx := uint64(len(tt.setup) + 1)
			data := []byte(nil)
			if tt.raw {
				data = rawEntry(t, tt.cmd)
			} else {
				data = mustEncode(t, tt.cmd)
			}
			res := applyData(t, f, idx, data)
			if !errors.Is(res.Err, tt.want) || (tt.want == nil) != (res.Err == nil) {
				t.Fatalf("Apply error %v, want %v", res.Err, tt.want)
			}
			got := f.State()
			if tt.want != nil {
				before.LastIndex = idx
				assertStateEqual(t, got, before)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// TestApply_OldEntriesApplyAsBefore replays entries written before use
// counts (the golden v1 files: a CreateToken without uses, an UpsertMember
// without a token id): they decode, the token has no use limit and the
// member record spends nothing.
func TestApply_OldEntriesApplyAsBefore(t *testing.T) {
	f := newTestFSM(t)
	for i, name := range []string{"06-create-token-v1.bin", "01-upsert-member-v1.bin"} {
		data, err := os.ReadFile(goldenPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if res := applyData(t, f, uint64(i+1), data); res.Err != nil {
			t.Fatalf("apply %s: %v", name, res.Err)
		}
	}
	s := f.State()
	tok := s.Tokens["k3x9q2"]
	if tok.UsesAllowed != 0 || tok.UsesSpent != 0 || tok.Revoked() || tok.UsedUp() || !tok.Admits(goldenTime) {
		t.Fatalf("old token %+v, want no use limit, nothing spent, not revoked", tok)
	}
	if _, ok := s.Members["gpu-node-1"]; !ok {
		t.Fatalf("old member record not applied: %+v", s.Members)
	}
	// A later join with the old token is counted but never refused for
	// its count.
	m := gpuMember("gpu-node-2", "192.168.10.12")
	m.JoinedAt = goldenTime.Add(time.Minute)
	mustApply(t, f, 3, UpsertMember{Member: m, TokenID: "k3x9q2"})
	if got := f.State().Tokens["k3x9q2"].UsesSpent; got != 1 {
		t.Fatalf("uses spent %d, want 1", got)
	}
}

// TestSnapshot_KeepsTokenUsesAndRevocation round-trips a token with uses
// spent and one revoked.
func TestSnapshot_KeepsTokenUsesAndRevocation(t *testing.T) {
	f := newTestFSM(t)
	for i, c := range []Command{
		CreateToken{Token: countedToken("ab12cd", 3)},
		joinWith("gpu1", "10.0.0.1", "ab12cd", time.Minute),
		CreateToken{Token: countedToken("zz99zz", 1)},
		RevokeToken{ID: "zz99zz", Time: at(2 * time.Minute), By: "root@gpu1"},
	} {
		mustApply(t, f, uint64(i+1), c)
	}
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(persist(t, f)))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	assertStateEqual(t, g.State(), f.State())
	if tok := g.State().Tokens["ab12cd"]; tok.UsesSpent != 1 || tok.UsesAllowed != 3 {
		t.Fatalf("restored token %+v", tok)
	}
	if !g.State().Tokens["zz99zz"].Revoked() {
		t.Fatal("restored token not revoked")
	}
}
