package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

func TestJoinToken_ExactlyOneSource(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte("  nbha1.from-file \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte("nbha1.x"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o400); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	env := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) { return v, k == tokenEnv }
	}
	tests := []struct {
		name    string
		args    []string
		env     func(string) (string, bool)
		want    string
		wantErr string
	}{
		{"flag", []string{"--token", "nbha1.flag"}, noEnv, "nbha1.flag", ""},
		{"file trimmed", []string{"--token-file", good}, noEnv, "nbha1.from-file", ""},
		{"environment", nil, env(" nbha1.env\n"), "nbha1.env", ""},
		{"none", nil, noEnv, "", "no join token: give --token-file PATH, set $NEWBIEHA_TOKEN, or give --token"},
		{"flag and file", []string{"--token", "a", "--token-file", good}, noEnv, "", "2 ways (--token, --token-file)"},
		{"file and environment", []string{"--token-file", good}, env("x"), "", "2 ways (--token-file, $NEWBIEHA_TOKEN)"},
		{"all three", []string{"--token", "a", "--token-file", good}, env("x"), "", "3 ways"},
		{"file open to others", []string{"--token-file", open}, noEnv, "", "mode 0644, open to group or other users; fix with: chmod 0600 " + open},
		{"empty file", []string{"--token-file", empty}, noEnv, "", "the join token is empty"},
		{"empty environment", nil, env(""), "", "$NEWBIEHA_TOKEN: the join token is empty"},
		{"missing file", []string{"--token-file", filepath.Join(dir, "nope")}, noEnv, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newJoinCmd()
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			token, _ := cmd.Flags().GetString("token")
			file, _ := cmd.Flags().GetString("token-file")
			got, err := joinToken(cmd, token, file, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestPrintTokens(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var b strings.Builder
	err := printTokens(&b, []cluster.TokenInfo{
		{ID: "ab12cd", Role: fsm.RoleGPU, Created: t0, Expires: t0.Add(time.Hour), UsesAllowed: 3, UsesSpent: 1, State: cluster.TokenValid},
		{ID: "old000", Created: t0, Expires: t0.Add(time.Hour), UsesSpent: 2, State: cluster.TokenExpired},
		{ID: "zz99zz", Role: fsm.RoleWitness, Created: t0, Expires: t0.Add(time.Hour), UsesAllowed: 1, Revoked: true, RevokedAt: t0.Add(time.Minute), RevokedBy: "root@node1", State: cluster.TokenRevoked},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"ID", "ab12cd  gpu", "1/3", "old000  any", "2/-", "revoked by root@node1 at 2026-01-02T03:05:05Z"} {
		if !strings.Contains(out, want) {
			t.Fatalf("table lacks %q:\n%s", want, out)
		}
	}
}
