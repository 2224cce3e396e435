// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): it sends "READY=1", "STOPPING=1" and "WATCHDOG=1" as
// datagrams to the unix socket named by $NOTIFY_SOCKET, and reads the
// watchdog interval systemd sets in $WATCHDOG_USEC. A name starting with
// '@' is a socket in the abstract namespace, as systemd documents.
//
// It uses only the standard library. When $NOTIFY_SOCKET is unset (the
// agent was not started by systemd with Type=notify, or runs in a test)
// every call does nothing and returns nil, so callers need no special
// case. See deploy/systemd/README.md and docs/operations.md.
package sdnotify
