package cluster

import (
	"net/http"
	"time"
)

// serverLimits bound how long one client may hold a connection of an API
// server. Without them a client that sends a request body one byte at a
// time, or opens a keep-alive connection and sends nothing, holds a
// goroutine and a file descriptor for ever (docs/security.md).
type serverLimits struct {
	// readHeader bounds the TLS handshake and the request headers.
	readHeader time.Duration
	// read bounds the whole request, body included (a slowloris body).
	read time.Duration
	// write bounds the handler and the response, from the end of the
	// headers; it must exceed the longest handler (a forwarded failover
	// holds for a few ApplyTimeouts).
	write time.Duration
	// idle closes a keep-alive connection that sends no next request.
	idle time.Duration
}

var (
	// remoteLimits are those of the mTLS API port, which anyone on the
	// network can reach (join needs no certificate), and of the metrics
	// port.
	remoteLimits = serverLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 60 * time.Second, idle: 15 * time.Second}
	// localLimits are those of the unix socket (root only): the same,
	// with room for a slow operator command.
	localLimits = serverLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 5 * time.Minute, idle: 15 * time.Second}
)

// limitServer sets l on s and returns s.
func limitServer(s *http.Server, l serverLimits) *http.Server {
	s.ReadHeaderTimeout = l.readHeader
	s.ReadTimeout = l.read
	s.WriteTimeout = l.write
	s.IdleTimeout = l.idle
	s.MaxHeaderBytes = 16 << 10
	return s
}
