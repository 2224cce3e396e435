package main

import (
	"errors"
	"github.com/newbieha/newbieha/internal/logging"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/newbieha/newbieha/internal/sdnotify"
)

// notifySocket listens where $NOTIFY_SOCKET points for the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(sdnotify.SocketEnv, path)
	return conn
}

// nextDatagram returns the next datagram within wait, or "" if none came.
func nextDatagram(t *testing.T, conn *net.UnixConn, wait time.Duration) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestWatchdog_PingsOnlyWhileAlive(t *testing.T) {
	conn := notifySocket(t)
	const interval = 200 * time.Millisecond
	t.Setenv(sdnotify.WatchdogUsecEnv, "200000")
	t.Setenv(sdnotify.WatchdogPIDEnv, "")
	var stalled atomic.Bool
	var asked atomic.Int64 // the maxAge the watchdog passes
	alive := func(maxAge time.Duration) error {
		asked.Store(int64(maxAge))
		if stalled.Load() {
			return errors.New("controller loop has not ticked for 1s")
		}
		return nil
	}
	stop := startWatchdog(logging.Discard(), alive)
	defer stop()

	for i := range 3 {
		if got := nextDatagram(t, conn, 2*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d while alive: %q, want WATCHDOG=1", i, got)
		}
	}
	if got := time.Duration(asked.Load()); got != interval {
		t.Fatalf("alive asked with maxAge %v, want the watchdog interval %v", got, interval)
	}

	stalled.Store(true)
	// At most one ping already on its way; then silence for several
	// ping periods (interval/2 each).
	if got := nextDatagram(t, conn, 4*interval); got != "" && got != "WATCHDOG=1" {
		t.Fatalf("unexpected datagram %q", got)
	}
	if got := nextDatagram(t, conn, 4*interval); got != "" {
		t.Fatalf("pinged %q while a loop is stalled", got)
	}

	stalled.Store(false)
	if got := nextDatagram(t, conn, 2*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("after the loops tick again: %q, want WATCHDOG=1", got)
	}
	stop()
	for nextDatagram(t, conn, 50*time.Millisecond) != "" { // drain what was in flight
	}
	if got := nextDatagram(t, conn, 4*interval); got != "" {
		t.Fatalf("pinged %q after stop", got)
	}
}

func TestWatchdog_OffWithoutWatchdogUsec(t *testing.T) {
	conn := notifySocket(t)
	t.Setenv(sdnotify.WatchdogUsecEnv, "")
	var calls atomic.Int32
	stop := startWatchdog(logging.Discard(), func(time.Duration) error { calls.Add(1); return nil })
	stop()
	if got := nextDatagram(t, conn, 200*time.Millisecond); got != "" || calls.Load() != 0 {
		t.Fatalf("with no WATCHDOG_USEC: datagram %q, %d liveness checks; want none", got, calls.Load())
	}
}

func TestVersion_PrintsRevisionAndBuildDate(t *testing.T) {
	old := [3]string{version, revision, buildDate}
	t.Cleanup(func() { version, revision, buildDate = old[0], old[1], old[2] })
	version, revision, buildDate = "1.2.3", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T22:00:00Z"
	var b strings.Builder
	printVersion(&b, readBuildInfo())
	out := b.String()
	for _, want := range []string{"newbieha 1.2.3\n", "revision:   0123456789abcdef0123456789abcdef01234567\n", "build date: 2026-12-01T22:00:00Z\n", "go:         go"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}
