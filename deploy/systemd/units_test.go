package systemd_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
)

// repoRoot is where the Makefile is, seen from this package's directory.
const repoRoot = "../.."

var units = []string{"newbieha-gpu.service", "newbieha-witness.service"}

// unitFile is a parsed unit: "Section.Key" to every value, in order.
type unitFile map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not KEY=VALUE: %q", path, line)
			}
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

// one returns the single value of key, failing if it is not set once.
func (u unitFile) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("%s: want exactly one value, have %q", key, u[key])
	}
	return u[key][0]
}

func (u unitFile) words(key string) map[string]bool {
	w := map[string]bool{}
	for _, v := range u[key] {
		for _, f := range strings.Fields(v) {
			w[f] = true
		}
	}
	return w
}

func seconds(t *testing.T, v string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("duration %q: %v", v, err)
	}
	return d
}

func mode(t *testing.T, path string, dir bool, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("installed: %v", err)
		return
	}
	if fi.IsDir() != dir || fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v (dir %v)", path, fi.Mode(), want, dir)
	}
}

// install runs make install into a fresh DESTDIR with extra variables and
// returns DESTDIR. Binaries are built into bin, not the work tree's bin/.
func install(t *testing.T, bin string, vars ...string) string {
	t.Helper()
	dest := t.TempDir()
	args := append([]string{"-C", repoRoot, "--no-print-directory", "install", "DESTDIR=" + dest, "BIN=" + bin}, vars...)
	cmd := exec.Command("make", args...)
	// Under `make test` the parent's MAKEFLAGS (jobserver, -k, ...) would
	// reach this make too: give it a clean one.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return dest
}

func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent: not in -short")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	bin := t.TempDir()
	dest := install(t, bin)

	binDir := filepath.Join(dest, "usr/local/bin")
	unitDir := filepath.Join(dest, "usr/local/lib/systemd/system")
	mode(t, filepath.Join(binDir, "newbieha"), false, 0o755)
	mode(t, filepath.Join(binDir, "newbieha-witness"), false, 0o755)
	mode(t, filepath.Join(dest, "var/lib/newbieha"), true, 0o700)
	mode(t, filepath.Join(dest, "etc/newbieha"), true, 0o755)
	for _, u := range units {
		mode(t, filepath.Join(unitDir, u), false, 0o644)
		src, _ := os.ReadFile(u)
		got, _ := os.ReadFile(filepath.Join(unitDir, u))
		if !bytes.Equal(src, got) {
			t.Errorf("%s: installed with the default PREFIX, it differs from deploy/systemd/%s", u, u)
		}
	}

	t.Run("version", func(t *testing.T) {
		rev := ""
		if out, err := exec.Command("git", "-C", repoRoot, "rev-parse", "HEAD").Output(); err == nil {
			rev = strings.TrimSpace(string(out))
		}
		for _, b := range []string{"newbieha", "newbieha-witness"} {
			out, err := exec.Command(filepath.Join(binDir, b), "version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s version: %v\n%s", b, err, out)
			}
			m := regexp.MustCompile(`(?m)^revision: +(\S+)\nbuild date: +(\S+)$`).FindStringSubmatch(string(out))
			if m == nil {
				t.Fatalf("%s version: no revision and build date lines:\n%s", b, out)
			}
			if rev != "" && strings.TrimSuffix(m[1], "-dirty") != rev {
				t.Errorf("%s version: revision %q, want the checkout's %s", b, m[1], rev)
			}
			if _, err := time.Parse(time.RFC3339, m[2]); err != nil {
				t.Errorf("%s version: build date %q: %v", b, m[2], err)
			}
		}
	})

	t.Run("units", func(t *testing.T) {
		handover := time.Duration(cluster.DefaultSettings().Failover.StopHandover)
		for _, name := range units {
			u := parseUnit(t, filepath.Join(unitDir, name))
			for key, want := range map[string]string{
				"Service.Type":               "notify",
				"Service.NotifyAccess":       "main",
				"Service.Restart":            "always",
				"Service.KillSignal":         "SIGTERM",
				"Service.StateDirectory":     "newbieha",
				"Service.StateDirectoryMode": "0700",
				"Unit.ConditionPathExists":   filepath.Join(cluster.DefaultDataDir, cluster.ConfigFileName),
				"Install.WantedBy":           "multi-user.target",
			} {
				if got := u.one(t, key); got != want {
					t.Errorf("%s: %s=%s, want %s", name, key, got, want)
				}
			}
			if d := seconds(t, u.one(t, "Service.WatchdogSec")); d < 5*time.Second {
				t.Errorf("%s: WatchdogSec=%v: a leader's controller step may take ApplyTimeout+PeerTimeout (7 s); want at least 5 s", name, d)
			}
			if d := seconds(t, u.one(t, "Service.RestartSec")); d > 5*time.Second {
				t.Errorf("%s: RestartSec=%v, want a short one", name, d)
			}
			if d := seconds(t, u.one(t, "Service.TimeoutStopSec")); d < handover+5*time.Second {
				t.Errorf("%s: TimeoutStopSec=%v, want above the stop handover (%v) plus the close", name, d, handover)
			}
			if !u.words("Unit.After")["network-online.target"] || !u.words("Unit.Wants")["network-online.target"] {
				t.Errorf("%s: want After= and Wants=network-online.target", name)
			}
			// Every command it runs is one make install put there, and the
			// CLI still takes the subcommand and flags.
			for _, key := range []string{"Service.ExecStart", "Service.ExecStopPost"} {
				for _, cmdline := range u[key] {
					f := strings.Fields(strings.TrimLeft(cmdline, "-@:+!"))
					if !strings.HasPrefix(f[0], "/usr/local/bin/") {
						t.Errorf("%s: %s runs %s, not a binary in /usr/local/bin", name, key, f[0])
						continue
					}
					exe := filepath.Join(dest, f[0])
					if out, err := exec.Command(exe, append(f[1:], "--help")...).CombinedOutput(); err != nil {
						t.Errorf("%s: %s %q: %v\n%s", name, key, cmdline, err, out)
					}
					if !strings.Contains(cmdline, "--data-dir "+cluster.DefaultDataDir) {
						t.Errorf("%s: %s %q: want --data-dir %s", name, key, cmdline, cluster.DefaultDataDir)
					}
				}
			}
		}
		gpu := parseUnit(t, filepath.Join(unitDir, "newbieha-gpu.service"))
		if got := gpu.one(t, "Service.ExecStart"); got != "/usr/local/bin/newbieha agent --data-dir /var/lib/newbieha" {
			t.Errorf("gpu ExecStart=%s", got)
		}
		if got := gpu.one(t, "Service.ExecStopPost"); !strings.Contains(got, "/usr/local/bin/newbieha vip release ") {
			t.Errorf("gpu ExecStopPost=%s, want the VIP release", got)
		}
		if !gpu.words("Unit.After")["docker.service"] {
			t.Error("gpu: want After=docker.service")
		}
		caps := gpu.words("Service.CapabilityBoundingSet")
		for _, c := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_SYS_ADMIN"} {
			if !caps[c] {
				t.Errorf("gpu: CapabilityBoundingSet lacks %s", c)
			}
		}
		if len(gpu["Service.DeviceAllow"]) > 0 || len(gpu["Service.PrivateDevices"]) > 0 || len(gpu["Service.ProtectClock"]) > 0 {
			t.Error("gpu: a device allow-list would hide /dev/nvidia* from NVML")
		}
		wit := parseUnit(t, filepath.Join(unitDir, "newbieha-witness.service"))
		if got := wit.one(t, "Service.ExecStart"); got != "/usr/local/bin/newbieha-witness agent --data-dir /var/lib/newbieha" {
			t.Errorf("witness ExecStart=%s", got)
		}
		if caps := wit.words("Service.CapabilityBoundingSet"); len(caps) != 1 || !caps["CAP_NET_RAW"] {
			t.Errorf("witness: CapabilityBoundingSet %v, want CAP_NET_RAW alone", caps)
		}
	})

	t.Run("sd_notify", func(t *testing.T) {
		testAgentNotifies(t, filepath.Join(binDir, "newbieha-witness"))
	})

	t.Run("prefix", func(t *testing.T) {
		// -o build: the binaries above, not built again.
		dest := install(t, bin, "-o", "build", "PREFIX=/usr")
		for _, u := range units {
			b, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system", u))
			if err != nil {
				t.Fatal(err)
			}
			if s := string(b); strings.Contains(s, "/usr/local/bin/") || !strings.Contains(s, "ExecStart=/usr/bin/newbieha") {
				t.Errorf("%s with PREFIX=/usr: binary path not rewritten:\n%s", u, s)
			}
		}
		mode(t, filepath.Join(dest, "usr/bin/newbieha"), false, 0o755)
		mode(t, filepath.Join(dest, "var/lib/newbieha"), true, 0o700)
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed (Debian package: systemd); units not verified")
		}
		// verify checks that each command exists and is executable: point
		// the units at the binaries under DESTDIR. (--root would also hide
		// the host's own units, sysinit.target and the rest, from it.)
		dir := t.TempDir()
		var paths []string
		for _, u := range units {
			b, err := os.ReadFile(filepath.Join(unitDir, u))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, u)
			if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/local/bin/"), []byte(binDir+"/")), 0o644); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		// No running systemd is needed (CI runs in a container): verify
		// loads the units into a private manager. --man=no: no man pages
		// to look up; --generators=no: leave the host's generators alone.
		// It exits 0 on a key it cannot parse ("..., ignoring"), so any
		// output at all fails the test.
		run := func(paths ...string) (string, error) {
			cmd := exec.Command(analyze, append([]string{"verify", "--man=no", "--generators=no"}, paths...)...)
			cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=info", "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_COLOR=0")
			out, err := cmd.CombinedOutput()
			return strings.TrimSpace(string(out)), err
		}
		if out, err := run(paths...); err != nil || out != "" {
			t.Fatalf("systemd-analyze verify %v: %v\n%s", units, err, out)
		}
		// The check can fail: a unit with a bad value is reported.
		bad := filepath.Join(dir, "newbieha-bad.service")
		b, _ := os.ReadFile(paths[0])
		if err := os.WriteFile(bad, bytes.Replace(b, []byte("Restart=always"), []byte("Restart=sometimes"), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := run(bad); err == nil && !strings.Contains(out, "sometimes") {
			t.Fatalf("systemd-analyze verify accepted Restart=sometimes without a word (%q): it checks nothing here", out)
		}
	})
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1 (gossip
// takes both).
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// testAgentNotifies runs a one-node cluster's agent as systemd would with
// Type=notify and WatchdogSec=1s, and reads what it sends: READY=1 once
// its API answers, WATCHDOG=1 about every half second, STOPPING=1 on
// SIGTERM, then a clean exit.
func testAgentNotifies(t *testing.T, exe string) {
	dataDir := filepath.Join(t.TempDir(), "data")
	initArgs := []string{"init", "--name", "n1", "--role", "witness", "--advertise", "127.0.0.1", "--data-dir", dataDir,
		"--api-port", strconv.Itoa(freePort(t)), "--raft-port", strconv.Itoa(freePort(t)), "--gossip-port", strconv.Itoa(freePort(t))}
	if out, err := exec.Command(exe, initArgs...).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func(wait time.Duration) string {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for a notification: %v", err)
		}
		return string(buf[:n])
	}

	var log bytes.Buffer
	agent := exec.Command(exe, "agent", "--data-dir", dataDir)
	agent.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=1000000")
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = agent.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	}()

	if got := next(30 * time.Second); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// The agent answers (exit 0 healthy, 1 degraded: a lone witness has no
	// active node); 2 would mean it could not be asked.
	out, err := exec.Command(exe, "status", "--data-dir", dataDir).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("status right after READY=1: %v\n%s", err, out)
	}
	start := time.Now()
	for i := range 3 {
		if got := next(5 * time.Second); got != "WATCHDOG=1" {
			t.Fatalf("notification %d after READY: %q, want WATCHDOG=1", i, got)
		}
	}
	// The first ping comes at once, the next two at half the interval.
	if d := time.Since(start); d < 700*time.Millisecond || d > 3*time.Second {
		t.Errorf("three pings took %v, want about 1s (WatchdogSec=1s, pinged every 0.5s)", d)
	}
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		got := next(10 * time.Second)
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("after SIGTERM: %q, want STOPPING=1", got)
		}
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent still running 20s after SIGTERM (TimeoutStopSec)")
	}
}
