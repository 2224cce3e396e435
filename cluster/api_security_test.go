package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
)

// These tests are named after the attacks of issue 9 (docs/security.md,
// "Threat model"); each failed on the main branch before the fix.

func TestAPI_EmptyBodyOrTrailingDataIsRefused(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	ctx := context.Background()
	local := NewLocalClient(n1.dataDir)
	if err := local.Maintenance(ctx, true, "test"); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"empty":    "",
		"spaces":   "  \n",
		"null":     "null",
		"array":    "[]",
		"trailing": `{"on":false,"reason":"x"} {"on":false}`,
		"garbage":  `{"on":false,"reason":"x"}garbage`,
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://agent/v1/maintenance", strings.NewReader(body))
		resp, err := local.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s body: status %d, want 400", name, resp.StatusCode)
		}
	}
	if !n1.agent.FSM().State().Maintenance {
		t.Fatal("maintenance was switched off")
	}
}

func TestAPI_SlowlorisBodyIdleKeepAliveAndSilentConnectionsAreClosed(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	addr := n1.agent.cfg.Node.APIAddr()
	if s := n1.agent.remoteSrv; s.ReadTimeout != remoteLimits.read || s.WriteTimeout != remoteLimits.write || s.IdleTimeout != remoteLimits.idle {
		t.Fatalf("remote server limits %v/%v/%v", s.ReadTimeout, s.WriteTimeout, s.IdleTimeout)
	}
	if s := n1.agent.localSrv; s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 {
		t.Fatal("local server has no limits")
	}
	// closedWithin waits for the server to close conn.
	closedWithin := func(t *testing.T, conn net.Conn, limit time.Duration) {
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(limit))
		_, _ = io.Copy(io.Discard, conn)
		if d := time.Since(start); d >= limit {
			t.Fatalf("connection still open after %v", d.Round(time.Second))
		}
	}
	t.Run("slowloris body", func(t *testing.T) {
		t.Parallel()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() { // one byte a second, never the whole body
			tk := time.NewTicker(time.Second)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		closedWithin(t, conn, remoteLimits.read+5*time.Second)
	})
	t.Run("idle keep-alive without certificate", func(t *testing.T) {
		t.Parallel()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		closedWithin(t, conn, remoteLimits.idle+5*time.Second)
	})
	t.Run("no TLS handshake", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		closedWithin(t, conn, remoteLimits.readHeader+5*time.Second)
	})
}

func TestStart_RefusesDataDirOrKeysOpenToOtherUsers(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	c.stop("node1")
	cfg, err := LoadNodeConfig(filepath.Join(n1.dataDir, ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		fix  string
	}{
		{n1.dataDir, 0o777, "chmod 0700 " + n1.dataDir},
		{n1.dataDir, 0o750, "chmod 0700 " + n1.dataDir},
		{filepath.Join(n1.dataDir, tlsDirName), 0o755, "chmod 0700 " + filepath.Join(n1.dataDir, tlsDirName)},
		{filepath.Join(n1.dataDir, tlsDirName, pki.NodeKeyFile), 0o644, "chmod 0600 " + filepath.Join(n1.dataDir, tlsDirName, pki.NodeKeyFile)},
		{filepath.Join(n1.dataDir, tlsDirName, pki.CAKeyFile), 0o640, "chmod 0600 " + filepath.Join(n1.dataDir, tlsDirName, pki.CAKeyFile)},
		{filepath.Join(n1.dataDir, gossipKeyFile), 0o644, "chmod 0600 " + filepath.Join(n1.dataDir, gossipKeyFile)},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tc.path, tc.mode); err != nil {
			t.Fatal(err)
		}
		a, err := Start(Config{DataDir: n1.dataDir, Node: cfg, Logger: testLogger(t, "node1")})
		if err == nil {
			a.Close()
			t.Fatalf("agent started with %s at %04o", tc.path, tc.mode)
		}
		if !errors.Is(err, ErrInsecurePermissions) || !strings.Contains(err.Error(), tc.fix) {
			t.Fatalf("%s at %04o: error %q does not say %q", tc.path, tc.mode, err, tc.fix)
		}
		if err := os.Chmod(tc.path, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	// With the modes fixed it starts, and its socket is 0600.
	a := c.start("node1")
	fi, err := os.Stat(SocketPath(a.cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket 0600", fi.Mode())
	}
	if err := NewLocalClient(a.cfg.DataDir).Maintenance(context.Background(), false, "check"); err != nil {
		t.Fatalf("local socket: %v", err)
	}
}
