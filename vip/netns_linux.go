//go:build linux

package vip

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// netNS remembers the network namespace a Manager was created in, so that
// sockets it opens later, from whatever thread, land in that namespace.
type netNS struct {
	// fd is an open handle on the namespace, or -1 when it is the
	// process's own namespace and no switching is needed.
	fd int
}

// currentNetNS captures the network namespace of the calling OS thread.
func currentNetNS() (*netNS, error) {
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace of this thread: %w", err)
	}
	var mine, proc unix.Stat_t
	if err := unix.Fstat(fd, &mine); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("stat network namespace of this thread: %w", err)
	}
	if err := unix.Stat("/proc/self/ns/net", &proc); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("stat network namespace of this process: %w", err)
	}
	if mine.Dev == proc.Dev && mine.Ino == proc.Ino {
		_ = unix.Close(fd)
		return &netNS{fd: -1}, nil
	}
	return &netNS{fd: fd}, nil
}

// do runs fn inside the namespace. In the process's own namespace it simply
// calls fn. Otherwise fn runs on a fresh goroutine locked to its OS thread,
// which first enters the namespace; that goroutine never unlocks the thread,
// so the Go runtime discards the thread when the goroutine ends and no other
// goroutine ever runs in the wrong namespace. Only socket creation needs
// this: a socket stays in the namespace it was created in.
func (n *netNS) do(fn func() error) error {
	if n.fd < 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// close releases the namespace handle.
func (n *netNS) close() {
	if n.fd >= 0 {
		_ = unix.Close(n.fd)
		n.fd = -1
	}
}
