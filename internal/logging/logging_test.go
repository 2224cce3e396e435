package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// lines decodes the JSON lines written so far.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newRepeatLogger(buf *bytes.Buffer, c *fakeClock, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level, ReplaceAttr: levelNames})
	return slog.New(NewRepeatHandler(h, 30*time.Second, c.now))
}

func TestRepeat_SameWarningPrintedOnceThenSummarisedWithItsCount(t *testing.T) {
	var buf bytes.Buffer
	c := &fakeClock{t: time.Unix(1000, 0)}
	l := newRepeatLogger(&buf, c, slog.LevelInfo)
	for range 60 { // a peer that stays down, every 500 ms for 30 s
		l.Warn("gossip join failed", "peer", "10.0.0.2:7946", "error", "connection refused")
		c.add(500 * time.Millisecond)
	}
	got := lines(t, &buf)
	if len(got) != 1 {
		t.Fatalf("within the window: %d lines, want 1: %v", len(got), got)
	}
	if _, ok := got[0]["repeated"]; ok {
		t.Fatalf("first line carries a count: %v", got[0])
	}
	c.add(time.Second)
	l.Info("something else")
	got = lines(t, &buf)
	if len(got) != 3 {
		t.Fatalf("after the window: %d lines, want the summary and the info line: %v", len(got), got)
	}
	sum := got[1]
	if sum["msg"] != "gossip join failed" || sum["peer"] != "10.0.0.2:7946" || sum["repeated"] != float64(59) || sum["level"] != "WARN" {
		t.Fatalf("summary %v: want the same warning with repeated=59", sum)
	}
	if got[2]["msg"] != "something else" {
		t.Fatalf("third line %v", got[2])
	}
	// A new window: printed again at once.
	l.Warn("gossip join failed", "peer", "10.0.0.2:7946", "error", "connection refused")
	if n := len(lines(t, &buf)); n != 4 {
		t.Fatalf("the next occurrence after the summary: %d lines, want 4", n)
	}
}

func TestRepeat_DifferentLinesAndLowerLevelsPassAndAShownLineHasNoSummary(t *testing.T) {
	var buf bytes.Buffer
	c := &fakeClock{t: time.Unix(1000, 0)}
	l := newRepeatLogger(&buf, c, slog.LevelDebug)
	l.Warn("dial failed", "peer", "a")
	l.Warn("dial failed", "peer", "b")               // other attributes
	Named(l, "vip").Warn("dial failed", "peer", "a") // other component
	l.Error("dial failed", "peer", "a")              // other level
	for range 5 {
		l.Info("renewed") // below warn: never held back
		l.Debug("tick")
	}
	if n := len(lines(t, &buf)); n != 14 {
		t.Fatalf("%d lines, want 4 distinct warnings + 10 info/debug:\n%s", n, buf.String())
	}
	c.add(time.Minute)
	l.Info("later")
	for _, m := range lines(t, &buf) {
		if _, ok := m["repeated"]; ok {
			t.Fatalf("a summary for lines never held back: %v", m)
		}
	}
}

func TestRepeat_TableStaysBounded(t *testing.T) {
	var buf bytes.Buffer
	c := &fakeClock{t: time.Unix(1000, 0)}
	h := NewRepeatHandler(slog.NewJSONHandler(&buf, nil), time.Hour, c.now)
	l := slog.New(h)
	for i := range 3 * maxRepeatKeys {
		l.Warn("distinct", "i", i)
		l.Warn("distinct", "i", i) // held back
		c.add(time.Millisecond)
	}
	if n := len(h.st.seen); n > maxRepeatKeys {
		t.Fatalf("%d lines remembered, bound %d", n, maxRepeatKeys)
	}
	// Evicted windows print their count: nothing held back is lost.
	held := 0
	for _, m := range lines(t, &buf) {
		if r, ok := m["repeated"]; ok {
			held += int(r.(float64))
		}
	}
	if want := 3*maxRepeatKeys - len(h.st.seen); held != want {
		t.Fatalf("summaries count %d held-back lines, want %d (the rest still in their window)", held, want)
	}
}

func TestNew_JSONAndTextWithLevels(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Options{Format: "json", Level: slog.LevelInfo, Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	Named(l, "lease").Debug("hidden")
	Named(l, "lease").Info("granted", "epoch", 7)
	got := lines(t, &buf)
	if len(got) != 1 || got[0]["component"] != "lease" || got[0]["epoch"] != float64(7) || got[0]["level"] != "INFO" {
		t.Fatalf("json lines %v", got)
	}
	buf.Reset()
	l, err = New(Options{Format: "text", Level: LevelTrace, Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(t.Context(), LevelTrace, "deep")
	if !strings.Contains(buf.String(), "level=TRACE msg=deep") {
		t.Fatalf("text trace line %q", buf.String())
	}
	if _, err := New(Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("bad format: %v", err)
	}
	for _, s := range []string{"trace", "debug", "info", "warn", "error", ""} {
		if _, err := ParseLevel(s); err != nil {
			t.Fatalf("ParseLevel(%q): %v", s, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Fatalf("ParseLevel(loud): %v", err)
	}
}

func TestHCLog_RaftLinesKeepTheirLevelAndComponent(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: levelNames}))
	h := HCLog(l, "raft", LevelTrace)
	h.Debug("below the logger's level")
	h.Trace("below too")
	h.Info("entering follower state", "follower", "node1")
	h.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "")
	h.Error("failed to contact", "server-id", "node2", "error", errors.New("dial tcp: refused"))
	h.Named("snapshot").Info("creating new snapshot", "path", "/x")
	h.With("peer", "node3").Warn("odd", "trailing")
	got := lines(t, &buf)
	if len(got) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(got), buf.String())
	}
	want := []struct{ level, comp, msg string }{
		{"INFO", "raft", "entering follower state"},
		{"WARN", "raft", "heartbeat timeout reached, starting election"},
		{"ERROR", "raft", "failed to contact"},
		{"INFO", "raft.snapshot", "creating new snapshot"},
		{"WARN", "raft", "odd"},
	}
	for i, w := range want {
		if got[i]["level"] != w.level || got[i]["component"] != w.comp || got[i]["msg"] != w.msg {
			t.Errorf("line %d: %v, want %+v", i, got[i], w)
		}
	}
	if got[2]["error"] != "dial tcp: refused" || got[4]["peer"] != "node3" || got[4]["extra"] != "trailing" {
		t.Errorf("attributes: %v / %v", got[2], got[4])
	}
	if h.IsDebug() || !h.IsInfo() || h.GetLevel() != hclog.Info {
		t.Errorf("IsDebug %v IsInfo %v GetLevel %v for an info logger", h.IsDebug(), h.IsInfo(), h.GetLevel())
	}
	// The floor operator commands use: Raft's start-up warning is not
	// for the operator, an error is.
	buf.Reset()
	quiet := HCLog(l, "raft", slog.LevelError)
	quiet.Warn("heartbeat timeout reached, starting election")
	quiet.Error("failed to take snapshot")
	if got := lines(t, &buf); len(got) != 1 || got[0]["msg"] != "failed to take snapshot" {
		t.Fatalf("with floor error: %v", got)
	}
}

func TestStdLog_MemberlistPrefixesBecomeLevels(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	std := StdLog(l, "gossip", slog.LevelInfo, LevelTrace)
	std.Printf("[DEBUG] memberlist: Stream connection from=%s", "10.0.0.2:5555")
	std.Printf("[WARN] memberlist: Refuting a suspect message (from: node2)")
	std.Printf("[ERR] memberlist: Failed to send ping: %v", "timeout")
	std.Printf("http: TLS handshake error from 10.0.0.9:4444: EOF")
	got := lines(t, &buf)
	want := []struct{ level, msg string }{
		{"WARN", "memberlist: Refuting a suspect message (from: node2)"},
		{"ERROR", "memberlist: Failed to send ping: timeout"},
		{"INFO", "http: TLS handshake error from 10.0.0.9:4444: EOF"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i, w := range want {
		if got[i]["level"] != w.level || got[i]["msg"] != w.msg || got[i]["component"] != "gossip" {
			t.Errorf("line %d: %v, want %+v", i, got[i], w)
		}
	}
}

func ExampleNew() {
	var buf bytes.Buffer
	l, _ := New(Options{Format: "text", Output: &buf})
	Named(l, "vip").Warn("address lost", "vip", "10.0.0.100/24")
	line := buf.String()
	fmt.Println(line[strings.Index(line, "level="):])
	// Output: level=WARN msg="address lost" component=vip vip=10.0.0.100/24
}
