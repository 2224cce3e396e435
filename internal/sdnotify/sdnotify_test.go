package sdnotify_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/newbieha/newbieha/internal/sdnotify"
)

// listen opens a datagram socket at name (a path, or '@' for an abstract
// one), points $NOTIFY_SOCKET at it and returns it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(sdnotify.SocketEnv, name)
	return conn
}

// read returns the next datagram, failing the test after a few seconds.
func read(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	return string(buf[:n])
}

func TestNotify_PathSocket(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"ready", sdnotify.Ready, "READY=1"},
		{"watchdog", sdnotify.Watchdog, "WATCHDOG=1"},
		{"stopping", sdnotify.Stopping, "STOPPING=1"},
		{"notify", func() error { return sdnotify.Notify("STATUS=serving\nREADY=1") }, "STATUS=serving\nREADY=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.send(); err != nil {
				t.Fatalf("send: %v", err)
			}
			if got := read(t, conn); got != tc.want {
				t.Fatalf("datagram = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNotify_AbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@newbieha-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn := listen(t, name)
	if err := sdnotify.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if got := read(t, conn); got != "READY=1" {
		t.Fatalf("datagram = %q, want READY=1", got)
	}
	// The same name without '@' is a path, not the abstract socket.
	if err := sdnotify.Send(name[1:], "READY=1"); err == nil {
		t.Fatalf("send to path %q (no such file) succeeded", name[1:])
	}
}

func TestNotify_UnsetDoesNothing(t *testing.T) {
	t.Setenv(sdnotify.SocketEnv, "")
	os.Unsetenv(sdnotify.SocketEnv) // t.Setenv restores the old value
	for name, f := range map[string]func() error{"Ready": sdnotify.Ready, "Stopping": sdnotify.Stopping, "Watchdog": sdnotify.Watchdog} {
		if err := f(); err != nil {
			t.Errorf("%s with no %s: %v, want nil", name, sdnotify.SocketEnv, err)
		}
	}
}

func TestNotify_Errors(t *testing.T) {
	t.Setenv(sdnotify.SocketEnv, filepath.Join(t.TempDir(), "missing.sock"))
	if err := sdnotify.Ready(); err == nil {
		t.Error("Ready to a missing socket: nil error")
	}
	t.Setenv(sdnotify.SocketEnv, "vsock:2:1234")
	if err := sdnotify.Ready(); !errors.Is(err, sdnotify.ErrUnsupportedSocket) {
		t.Errorf("Ready to vsock: %v, want ErrUnsupportedSocket", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		ok              bool
	}{
		{"unset", "", "", 0, false},
		{"10s", "10000000", "", 10 * time.Second, true},
		{"this pid", "2500000", self, 2500 * time.Millisecond, true},
		{"other pid", "10000000", "1", 0, false},
		{"bad pid", "10000000", "x", 0, false},
		{"zero", "0", "", 0, false},
		{"negative", "-5", "", 0, false},
		{"garbage", "10s", "", 0, false},
		{"overflow", "18446744073709551615", "", 0, false},
		{"too long", "9223372036854775807", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(sdnotify.WatchdogUsecEnv, tc.usec)
			t.Setenv(sdnotify.WatchdogPIDEnv, tc.pid)
			got, ok := sdnotify.WatchdogInterval()
			if got != tc.want || ok != tc.ok {
				t.Fatalf("WatchdogInterval() = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
