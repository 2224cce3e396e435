package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/internal/logging"
)

// The agent's logger as a node config asks for it: JSON lines naming the
// agent, Raft's lines in it at their own level with their component, and
// a warning that repeats (a peer that stays down) printed once.
func TestNodeConfigLogger_JSONWithRaftLinesAndRepeatsHeldBack(t *testing.T) {
	cfg, err := ParseNodeConfig([]byte(goodConfig + "log_format: json\nlog_level: info\n"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l := cfg.NewLogger(&buf)
	raftLog := logging.HCLog(l, "raft", logging.LevelTrace)
	raftLog.Debug("below info")
	raftLog.Warn("failed to contact", "server-id", "node2")
	for range 20 {
		logging.Named(l, "gossip").Error("gossip join failed", "error", "dial tcp 10.0.0.2:7702: connect: connection refused")
	}
	logging.Named(l, "lease").Info("renewed", "epoch", 3)
	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if m["agent"] != "node1" {
			t.Errorf("line without agent=node1: %v", m)
		}
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("%d lines, want raft's warning, one join failure, the info line:\n%s", len(got), buf.String())
	}
	if got[0]["component"] != "raft" || got[0]["level"] != "WARN" || got[1]["msg"] != "gossip join failed" || got[2]["epoch"] != float64(3) {
		t.Fatalf("lines %v", got)
	}
	// Text is the default.
	cfg.LogFormat = ""
	buf.Reset()
	cfg.NewLogger(&buf).Warn("x", "k", "v")
	if !strings.Contains(buf.String(), `level=WARN msg=x agent=node1 k=v`) {
		t.Fatalf("text line %q", buf.String())
	}
	if !cfg.NewLogger(&buf).Enabled(t.Context(), slog.LevelInfo) || cfg.NewLogger(&buf).Enabled(t.Context(), slog.LevelDebug) {
		t.Fatal("log_level info not honoured")
	}
}
