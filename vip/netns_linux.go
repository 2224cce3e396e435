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
	fd       int // open handle on the namespace, for setns(2)
	dev, ino uint64
}

// threadNetNSPath names the calling thread's network namespace.
const threadNetNSPath = "/proc/thread-self/ns/net"

// currentNetNS captures the network namespace of the calling OS thread.
func currentNetNS() (*netNS, error) {
	fd, err := unix.Open(threadNetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace of this thread: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("stat network namespace of this thread: %w", err)
	}
	return &netNS{fd: fd, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// do runs fn inside the namespace. If the calling thread is already in it
// (the usual case: one namespace for the whole process), fn runs here, with
// the goroutine locked to the thread so it cannot move meanwhile. Otherwise
// fn runs on a fresh goroutine locked to its OS thread, which first enters
// the namespace; that goroutine never unlocks the thread, so the Go runtime
// discards the thread when the goroutine ends and no other goroutine ever
// runs in the wrong namespace. Only socket creation needs this: a socket
// stays in the namespace it was created in.
func (n *netNS) do(fn func() error) error {
	runtime.LockOSThread()
	var st unix.Stat_t
	if err := unix.Stat(threadNetNSPath, &st); err == nil && uint64(st.Dev) == n.dev && uint64(st.Ino) == n.ino {
		defer runtime.UnlockOSThread()
		return fn()
	}
	runtime.UnlockOSThread()
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
