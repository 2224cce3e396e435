package main

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startRun runs the whole program in-process and waits until it answers.
func startRun(t *testing.T, args ...string) (string, <-chan int, *syncBuf) {
	t.Helper()
	addr := freeAddr(t)
	logs := &syncBuf{}
	done := make(chan int, 1)
	go func() { done <- run(append([]string{"--listen", addr}, args...), logs) }()
	deadline := time.Now().Add(5 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		// GET /fault answers in every fault mode.
		resp, err := client.Get("http://" + addr + "/fault")
		if err == nil {
			resp.Body.Close()
			return addr, done, logs
		}
		select {
		case code := <-done:
			t.Fatalf("run exited early with %d: %s", code, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stub did not answer on %s: %v; logs: %s", addr, err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitExit(t *testing.T, done <-chan int, logs *syncBuf) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return; logs: %s", logs)
		return -1
	}
}

func TestRun_ExitFault(t *testing.T) {
	addr, done, logs := startRun(t, "--node", "n1")
	resp, err := http.Post("http://"+addr+"/fault", "application/json", strings.NewReader(`{"mode":"exit"}`))
	if err != nil {
		t.Fatalf("POST /fault exit: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /fault exit: status %d", resp.StatusCode)
	}
	if code := waitExit(t, done, logs); code != ExitStatus {
		t.Fatalf("exit status %d, want %d", code, ExitStatus)
	}
}

func TestRun_SIGTERMIsGraceful(t *testing.T) {
	_, done, logs := startRun(t, "--fault", "hang")
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, done, logs); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0; logs: %s", code, logs)
	}
}

func TestRun_ExitFaultAtStart(t *testing.T) {
	t.Setenv("STUB_FAULT", "exit")
	if code := run([]string{"--listen", freeAddr(t)}, &syncBuf{}); code != ExitStatus {
		t.Fatalf("exit status %d, want %d", code, ExitStatus)
	}
}

func TestRun_ProbeMode(t *testing.T) {
	addr, done, logs := startRun(t)
	if code := run([]string{"--probe", "http://" + addr + "/health"}, logs); code != 0 {
		t.Fatalf("probe of healthy stub: %d", code)
	}
	if code := run([]string{"--probe", "http://" + addr + "/nope"}, logs); code != 1 {
		t.Fatalf("probe of 404: %d, want 1", code)
	}
	resp, err := http.Post("http://"+addr+"/fault", "application/json", strings.NewReader(`{"mode":"exit"}`))
	if err == nil {
		resp.Body.Close()
	}
	waitExit(t, done, logs)
}
