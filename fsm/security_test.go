package fsm

import (
	"encoding/json"
	"errors"
	"github.com/newbieha/newbieha/internal/logging"
	"strings"
	"testing"
	"time"
)

// These tests are named after the attacks of issue 9 that reach the state
// machine: a command forwarded through /v1/internal/apply is applied by
// every replica, so the rule must hold in Apply, not only on the path the
// CLI takes.

func TestApply_CreateTokenValidUntilYear9999IsRejected(t *testing.T) {
	f := newTestFSM(t)
	tok := Token{ID: "evil99", SecretHash: testHash, CreatedAt: t0, Expires: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), Role: RoleGPU}
	res := applyData(t, f, 1, rawEntry(t, CreateToken{Token: tok}))
	if !errors.Is(res.Err, ErrInvalidCommand) || !strings.Contains(res.Err.Error(), "at most") {
		t.Fatalf("year-9999 token: err = %v, want ErrInvalidCommand naming the limit", res.Err)
	}
	if _, ok := f.State().Tokens["evil99"]; ok {
		t.Fatal("year-9999 token was stored")
	}
	// One tick over the limit is refused, the limit itself is not.
	tok.Expires = t0.Add(MaxTokenLifetime + time.Nanosecond)
	if res := applyData(t, f, 2, rawEntry(t, CreateToken{Token: tok})); !errors.Is(res.Err, ErrInvalidCommand) {
		t.Fatalf("token over MaxTokenLifetime: err = %v", res.Err)
	}
	tok.Expires = t0.Add(MaxTokenLifetime)
	mustApply(t, f, 3, CreateToken{Token: tok})
}

func TestApply_CreateTokenWithUnknownRoleIsRejected(t *testing.T) {
	f := newTestFSM(t)
	tok := testToken("role01", time.Hour)
	tok.Role = "admin"
	if res := applyData(t, f, 1, rawEntry(t, CreateToken{Token: tok})); !errors.Is(res.Err, ErrInvalidCommand) {
		t.Fatalf("role admin: err = %v, want ErrInvalidCommand", res.Err)
	}
	for i, r := range []Role{RoleGPU, RoleWitness, ""} {
		tok := testToken("role1"+string(rune('a'+i)), time.Hour)
		tok.Role = r
		mustApply(t, f, uint64(2+i), CreateToken{Token: tok})
		if got := f.State().Tokens[tok.ID].Role; got != r {
			t.Fatalf("stored role %q, want %q", got, r)
		}
	}
}

// rejectingValidator stands for the cluster's settings validator: it
// refuses a zero renew interval and a negative hold-down.
func rejectingValidator(raw json.RawMessage) error {
	var doc struct {
		Timings struct {
			Renew string `json:"vip_renew_interval"`
		} `json:"timings"`
		Failover struct {
			HoldDown string `json:"hold_down"`
		} `json:"failover"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	if doc.Timings.Renew == "0s" {
		return errors.New(`key "timings.vip_renew_interval": 0s is below 10ms`)
	}
	if strings.HasPrefix(doc.Failover.HoldDown, "-") {
		return errors.New(`key "failover.hold_down": must be 0-24h`)
	}
	return nil
}

func TestApply_SettingsWithZeroRenewOrNegativeHoldDownAreRejected(t *testing.T) {
	f := New(Config{Logger: logging.Discard(), ValidateSettings: rejectingValidator})
	good := json.RawMessage(`{"timings":{"vip_renew_interval":"250ms"},"failover":{"hold_down":"30s"}}`)
	mustApply(t, f, 1, SetSettings{Settings: good})
	for i, doc := range []string{
		`{"timings":{"vip_renew_interval":"0s"}}`,
		`{"failover":{"hold_down":"-1h"}}`,
		`{"failover":{"hold_down":5}}`, // not the validator's type
	} {
		res := applyData(t, f, uint64(2+i), mustEncode(t, SetSettings{Settings: json.RawMessage(doc)}))
		if !errors.Is(res.Err, ErrInvalidCommand) {
			t.Fatalf("settings %s: err = %v, want ErrInvalidCommand", doc, res.Err)
		}
		if got := string(f.State().Settings); got != string(good) {
			t.Fatalf("settings %s changed the state to %s", doc, got)
		}
	}
	// Clearing the settings (defaults) needs no validation.
	mustApply(t, f, 9, SetSettings{})
}

func TestApply_SettingsValidatorIsOptional(t *testing.T) {
	f := newTestFSM(t)
	mustApply(t, f, 1, SetSettings{Settings: json.RawMessage(`{"timings":{"vip_renew_interval":"0s"}}`)})
}

func TestRestore_KeepsATokenOverTheLifetimeLimit(t *testing.T) {
	// A state written before the rule may hold a long-lived token; it must
	// still restore (it is pruned when it expires).
	s := emptyState()
	s.Tokens["old999"] = Token{ID: "old999", SecretHash: testHash, CreatedAt: t0, Expires: t0.Add(365 * 24 * time.Hour)}
	if err := validateState(&s); err != nil {
		t.Fatalf("validateState: %v", err)
	}
}
