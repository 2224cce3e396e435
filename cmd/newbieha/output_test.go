package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/cluster"
)

// Every command that prints data takes -o json.
func TestOutput_DataCommandsTakeJSON(t *testing.T) {
	root := newRootCmd()
	for _, path := range []string{"status", "history", "token list", "token create", "cert status", "config show",
		"version", "init", "failover", "snapshot inspect", "drill list"} {
		c, _, err := root.Find(strings.Fields(path))
		if err != nil || c.Name() != strings.Fields(path)[len(strings.Fields(path))-1] {
			t.Errorf("%s: not found (%v)", path, err)
			continue
		}
		if f := c.Flags().Lookup("output"); f == nil || f.Shorthand != "o" {
			t.Errorf("%s has no -o/--output", path)
		}
	}
}

// version and token create answer JSON with -o json.
func TestOutput_JSON(t *testing.T) {
	out, _, err := runOut(t, "version", "-o", "json")
	var b buildInfo
	if err != nil || json.Unmarshal([]byte(out), &b) != nil || b.Version == "" || b.GoVersion == "" {
		t.Fatalf("version -o json: %v\n%s", err, out)
	}
	_, dir := newOpsAgent(t, threeNodes())
	out, _, err = runOut(t, "token", "create", "-o", "json", "--data-dir", dir)
	var tr cluster.TokenResponse
	if err != nil || json.Unmarshal([]byte(out), &tr) != nil || !strings.Contains(out, `"expires"`) {
		t.Fatalf("token create -o json: %v\n%s", err, out)
	}
	if _, _, err := runOut(t, "version", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "want table or json") {
		t.Fatalf("version -o yaml: %v", err)
	}
}

// token create --out writes the token alone to a new 0600 file (what
// join --token-file accepts) and never over an existing one.
func TestTokenCreate_OutFile(t *testing.T) {
	_, dir := newOpsAgent(t, threeNodes())
	file := filepath.Join(t.TempDir(), "token")
	out, _, err := runOut(t, "token", "create", "--uses", "2", "--out", file, "--data-dir", dir)
	if err != nil || !strings.Contains(out, "token written to "+file) {
		t.Fatalf("token create --out: %v\n%s", err, out)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v; want mode 0600", fi, err)
	}
	b, _ := os.ReadFile(file)
	if tok := strings.TrimSpace(string(b)); tok == "" || strings.Contains(out, tok) {
		t.Fatalf("token file %q; the token must be in the file only, not printed (%q)", b, out)
	}
	if _, _, err := runOut(t, "token", "create", "--out", file, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("token create --out over an existing file: %v", err)
	}
}
