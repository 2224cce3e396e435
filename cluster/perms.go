package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/newbieha/newbieha/cluster/pki"
)

// ErrInsecurePermissions means the data dir or a key in it can be read or
// changed by users other than the agent's own; the agent refuses to start.
var ErrInsecurePermissions = errors.New("insecure file permissions")

// checkPermissions refuses a data dir, TLS dir or key file that has any
// group or other permission bit set, naming the file and the chmod that
// fixes it. The keys are the cluster's identity (the CA key signs members,
// the node key is this node, the gossip key opens every gossip packet):
// one readable by another local user is a stolen identity.
func checkPermissions(dataDir string) error {
	paths := []struct {
		path     string
		dir      bool
		optional bool
	}{
		{dataDir, true, false},
		{filepath.Join(dataDir, tlsDirName), true, false},
		{filepath.Join(dataDir, tlsDirName, pki.NodeKeyFile), false, false},
		{filepath.Join(dataDir, tlsDirName, pki.CAKeyFile), false, true},
		{filepath.Join(dataDir, gossipKeyFile), false, false},
	}
	var errs []error
	for _, p := range paths {
		fi, err := os.Stat(p.path)
		if p.optional && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("check permissions: %w", err))
			continue
		}
		want := os.FileMode(0o600)
		if p.dir {
			want = 0o700
		}
		if fi.IsDir() != p.dir {
			errs = append(errs, fmt.Errorf("%w: %s: want a %s", ErrInsecurePermissions, p.path, map[bool]string{true: "directory", false: "regular file"}[p.dir]))
			continue
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			errs = append(errs, fmt.Errorf("%w: %s has mode %04o, open to group or other users; fix with: chmod %04o %s",
				ErrInsecurePermissions, p.path, perm, want, p.path))
		}
	}
	return errors.Join(errs...)
}

// listenLocalSocket creates the local API socket at path with mode 0600
// and no moment at which another user could connect to it: the socket is
// bound inside a fresh private (0700) directory beside path, narrowed to
// 0600 there, and only then renamed into place. Unlike setting the umask,
// this changes nothing process-wide (the umask is shared by every
// goroutine, and raft or gossip may be creating files at the same time).
func listenLocalSocket(path string) (net.Listener, error) {
	// The bound name is no longer than path (sun_path holds 108 bytes).
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, fmt.Errorf("local socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("local socket %s: %w", path, err)
	}
	bound := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", bound)
	if err != nil {
		return nil, fmt.Errorf("listen local socket %s: %w", path, err)
	}
	// The listener would remove the temporary name on Close; the socket
	// lives at path, which Agent.Close removes.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod local socket %s: %w", path, err)
	}
	_ = os.Remove(path) // a stale socket of a previous run
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local socket %s: %w", path, err)
	}
	return ln, nil
}
