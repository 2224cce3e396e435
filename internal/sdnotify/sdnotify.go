package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The environment variables systemd sets for a service (sd_notify(3),
// sd_watchdog_enabled(3)).
const (
	// SocketEnv names the datagram socket notifications go to.
	SocketEnv = "NOTIFY_SOCKET"
	// WatchdogUsecEnv is the watchdog interval (WatchdogSec=) in
	// microseconds.
	WatchdogUsecEnv = "WATCHDOG_USEC"
	// WatchdogPIDEnv, when set, is the PID the watchdog applies to; any
	// other process must not ping it.
	WatchdogPIDEnv = "WATCHDOG_PID"
)

// The states this package sends (sd_notify(3)).
const (
	// StateReady tells systemd the service has finished starting up.
	StateReady = "READY=1"
	// StateStopping tells systemd the service is beginning to shut down.
	StateStopping = "STOPPING=1"
	// StateWatchdog keeps the watchdog from firing.
	StateWatchdog = "WATCHDOG=1"
)

// ErrUnsupportedSocket means $NOTIFY_SOCKET names a socket this package
// cannot reach (systemd also allows vsock: addresses, for VMs).
var ErrUnsupportedSocket = errors.New("unsupported notify socket")

// Ready sends READY=1: the service is up and serving.
func Ready() error { return Notify(StateReady) }

// Stopping sends STOPPING=1: the service has begun to stop.
func Stopping() error { return Notify(StateStopping) }

// Watchdog sends WATCHDOG=1, the keep-alive ping for WatchdogSec=.
func Watchdog() error { return Notify(StateWatchdog) }

// Notify sends state, one or more newline-separated VAR=VALUE
// assignments, to $NOTIFY_SOCKET. It does nothing and returns nil when
// the variable is unset or empty.
func Notify(state string) error {
	return Send(os.Getenv(SocketEnv), state)
}

// Send sends state as one datagram to the notify socket named socket (a
// path, or an abstract name starting with '@'). An empty socket means
// notifications are off: nothing is sent and the result is nil.
func Send(socket, state string) error {
	if socket == "" {
		return nil
	}
	if strings.HasPrefix(socket, "vsock:") {
		return fmt.Errorf("sd_notify %s: %w", socket, ErrUnsupportedSocket)
	}
	// The Go runtime maps a leading '@' to the abstract namespace (a
	// leading NUL byte in sun_path), as sd_notify does.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: send %q: %w", socket, state, err)
	}
	return nil
}

// WatchdogInterval returns the watchdog interval systemd expects pings
// within (WatchdogSec=), and false when the watchdog is off for this
// process: $WATCHDOG_USEC unset, zero or malformed, or $WATCHDOG_PID set
// to another process. Ping at half the interval, as sd_watchdog_enabled(3)
// recommends.
func WatchdogInterval() (time.Duration, bool) {
	if pid := os.Getenv(WatchdogPIDEnv); pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p != os.Getpid() {
			return 0, false
		}
	}
	usec, err := strconv.ParseUint(os.Getenv(WatchdogUsecEnv), 10, 63)
	if err != nil || usec == 0 || usec > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, false
	}
	return time.Duration(usec) * time.Microsecond, true
}
