package hooks

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests below use the real Runner, the real HTTP client and the real
// clock: a real receiver on loopback and real processes.

type received struct {
	body    []byte
	sig     string
	attempt string
	at      time.Time
}

func TestWebhook_SignedAndRetriedOn500WithBackoff(t *testing.T) {
	secret := []byte("0123456789abcdef-lab-secret")
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{b, r.Header.Get(SignatureHeader), r.Header.Get(AttemptHeader), time.Now()})
		n := len(got)
		mu.Unlock()
		if n <= 2 {
			http.Error(w, "not yet", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	m := New(Config{Node: "node2"})
	defer m.Close()
	backoff := 100 * time.Millisecond
	if err := m.Set([]Hook{{Name: "w", Webhook: &Webhook{URL: srv.URL + "/hook", SecretFile: secretFile},
		Timeout: 5 * time.Second, Retries: 3, Backoff: backoff, MaxBackoff: time.Second}}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: BecameHolder, Epoch: 4, PreviousHolder: "node1", Holder: "node2", Role: RoleHolder, Reason: "manual:failover"})
	waitUntil(t, "delivery", func() bool { return statsOf(t, m, "w").Delivered == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3 (two 500s retried, then 200)", len(got))
	}
	for i, r := range got {
		if !Verify(secret, r.body, r.sig) {
			t.Fatalf("request %d: signature %q does not verify", i+1, r.sig)
		}
		if Verify([]byte("another-secret-of-16b"), r.body, r.sig) {
			t.Fatal("a signature verifies under another secret")
		}
		if string(r.body) != string(got[0].body) {
			t.Fatalf("request %d has another body: %s vs %s", i+1, r.body, got[0].body)
		}
		if r.attempt != strconv.Itoa(i+1) {
			t.Fatalf("request %d: attempt header %q", i+1, r.attempt)
		}
	}
	// The pauses double from backoff: at least 100 ms, then 200 ms (lower
	// bounds only: a slow machine makes them longer, never shorter).
	if d := got[1].at.Sub(got[0].at); d < backoff {
		t.Fatalf("first retry after %v, before the backoff %v", d, backoff)
	}
	if d := got[2].at.Sub(got[1].at); d < 2*backoff {
		t.Fatalf("second retry after %v, before twice the backoff", d)
	}
	var e Event
	if err := json.Unmarshal(got[0].body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Event != BecameHolder || e.Epoch != 4 || e.Node != "node2" || e.PreviousHolder != "node1" || e.ID == "" || e.Time.IsZero() {
		t.Fatalf("body %s", got[0].body)
	}
	s := statsOf(t, m, "w")
	if s.Attempts["error"] != 2 || s.Attempts["ok"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWebhook_SecretFileOpenToOthersIsRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(f, []byte("0123456789abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecret(f); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("ReadSecret of a 0644 file: %v", err)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadSecret(f)
	if err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("ReadSecret of a short secret: %v (must say so without showing it)", err)
	}
}

// alive reports whether a process exists.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitUntil(t, path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// A hook that hangs past its timeout is killed with its whole process
// group, is retried as set, and holds up neither Emit nor another hook.
func TestExec_HangingHookIsKilledWithItsGroupAndDelaysNothing(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hang.sh")
	// It starts a child in its group, writes both pids, and waits forever.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 600 &\necho $! > \"$1/child.$NEWBIEHA_ATTEMPT\"\necho $$ > \"$1/parent.$NEWBIEHA_ATTEMPT\"\nwait\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	fast := filepath.Join(dir, "fast.sh")
	if err := os.WriteFile(fast, []byte("#!/bin/sh\necho \"$NEWBIEHA_EVENT_ID\" >> \"$1/fast\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	m := New(Config{Node: "node1"})
	defer m.Close()
	if err := m.Set([]Hook{
		{Name: "hang", Exec: &Exec{Command: []string{script, dir}}, Timeout: 3 * time.Second, Retries: 1, Backoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		{Name: "fast", Exec: &Exec{Command: []string{fast, dir}}, Timeout: 10 * time.Second},
	}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: Released, ID: "e1"})
	parent, child := readPid(t, filepath.Join(dir, "parent.1")), readPid(t, filepath.Join(dir, "child.1"))
	// While the first attempt hangs, the other hook runs its event.
	waitUntil(t, "the fast hook", func() bool { return statsOf(t, m, "fast").Delivered == 1 })
	if s := statsOf(t, m, "hang"); s.Attempts["timeout"] != 0 {
		t.Fatalf("the fast hook was delivered only after the hanging one timed out: %+v", s)
	}
	// Both attempts time out; each kills its group, the child too.
	waitUntil(t, "the hanging hook to give up", func() bool { return statsOf(t, m, "hang").Failed == 1 })
	if s := statsOf(t, m, "hang"); s.Attempts["timeout"] != 2 || s.Delivered != 0 {
		t.Fatalf("stats %+v, want 2 timeouts (1 + 1 retry)", s)
	}
	waitUntil(t, "the first attempt's processes to be gone", func() bool { return !alive(parent) && !alive(child) })
	p2, c2 := readPid(t, filepath.Join(dir, "parent.2")), readPid(t, filepath.Join(dir, "child.2"))
	waitUntil(t, "the retry's processes to be gone", func() bool { return !alive(p2) && !alive(c2) })
}

// Emit does not wait for a hook that hangs for minutes, and Close kills it.
func TestExec_EmitDoesNotWaitAndCloseKills(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hang.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho $$ > \"$1/parent\"\nexec sleep 600\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	m := New(Config{Node: "node1", QueueLen: 4})
	if err := m.Set([]Hook{{Name: "hang", Exec: &Exec{Command: []string{script, dir}}, Timeout: 10 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: Released})
	pid := readPid(t, filepath.Join(dir, "parent"))
	for range 10 {
		m.Emit(Event{Event: Released}) // returns: 4 queue, 6 dropped
	}
	if s := statsOf(t, m, "hang"); s.Dropped != 6 || s.Queued != 4 {
		t.Fatalf("stats %+v", s)
	}
	m.Close()
	if alive(pid) {
		t.Fatal("Close left the hanging hook running")
	}
	if s := statsOf(t, m, "hang"); s.Discarded != 5 {
		t.Fatalf("stats %+v, want 5 discarded (4 queued, 1 in flight)", s)
	}
}

func TestExec_GetsTheEventInEnvAndStdin(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "env.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nenv > \"$1/env\"\ncat > \"$1/stdin\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEWBIEHA_LEAK_CHECK", "agent-env")
	m := New(Config{Node: "node1"})
	defer m.Close()
	if err := m.Set([]Hook{{Name: "env", Exec: &Exec{Command: []string{script, dir}}, Timeout: 10 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	m.Emit(Event{Event: BecameHolder, ID: "id-1", Epoch: 9, Role: RoleHolder, Reason: "health:node2:http:service", PreviousHolder: "node2", Holder: "node1"})
	waitUntil(t, "delivery", func() bool { return statsOf(t, m, "env").Delivered == 1 })
	env, _ := os.ReadFile(filepath.Join(dir, "env"))
	for _, want := range []string{"NEWBIEHA_EVENT=became-holder", "NEWBIEHA_EVENT_ID=id-1", "NEWBIEHA_NODE=node1", "NEWBIEHA_ROLE=holder",
		"NEWBIEHA_EPOCH=9", "NEWBIEHA_REASON=health:node2:http:service", "NEWBIEHA_PREVIOUS_HOLDER=node2", "NEWBIEHA_ATTEMPT=1"} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if strings.Contains(string(env), "NEWBIEHA_LEAK_CHECK") {
		t.Error("the agent's own environment reached the hook")
	}
	var e Event
	b, _ := os.ReadFile(filepath.Join(dir, "stdin"))
	if err := json.Unmarshal(b, &e); err != nil || e.ID != "id-1" || e.Epoch != 9 {
		t.Fatalf("stdin %s: %v", b, err)
	}
}

func TestExec_FailureCarriesOutput(t *testing.T) {
	_, err := ExecRunner{}.Run(t.Context(), []string{"/bin/sh", "-c", "echo nope; exit 3"}, nil, nil)
	var ee interface{ ExitCode() int }
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("err %v", err)
	}
}
