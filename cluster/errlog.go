package cluster

import (
	"log/slog"
	"sync"
)

// repeatLog logs an error as a warning once, and again only when a
// different one comes: loops that retry every few milliseconds would
// otherwise flood the log with the same line.
type repeatLog struct {
	mu   sync.Mutex
	last string
}

func (r *repeatLog) warn(log *slog.Logger, what string, err error) {
	msg := err.Error()
	r.mu.Lock()
	repeat := msg == r.last
	r.last = msg
	r.mu.Unlock()
	if !repeat {
		log.Warn(what, "error", msg)
	}
}
