package logging

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// DefaultRepeatWindow is how long a repeated warning is held back.
const DefaultRepeatWindow = 30 * time.Second

// maxRepeatKeys bounds the lines remembered; past it the oldest window
// ends early (its count is printed), so memory stays bounded whatever
// the messages are.
const maxRepeatKeys = 512

// repeatState is shared by a handler and every handler derived from it
// with WithAttrs or WithGroup, so "the same line" means the same across
// them.
type repeatState struct {
	mu        sync.Mutex
	window    time.Duration
	now       func() time.Time
	seen      map[string]*repeatEntry
	lastSweep time.Time
}

type repeatEntry struct {
	shown      time.Time // when the line was last printed
	suppressed int       // lines held back since
	last       slog.Record
	handler    slog.Handler // where last goes when summarised
}

// RepeatHandler prints a warning or error the first time, then holds
// back the same line (level, message, attributes, component) for the
// window. When the window ends, the last held-back line is printed with
// repeated=N, the number held back; the next one starts a new window.
// The summary comes with the next line logged after the window ends, so
// a quiet agent prints it late rather than never. Debug and info lines
// pass untouched.
type RepeatHandler struct {
	inner  slog.Handler
	prefix string // the attributes and groups of WithAttrs/WithGroup
	st     *repeatState
}

// NewRepeatHandler wraps inner; now is the clock (nil means time.Now).
func NewRepeatHandler(inner slog.Handler, window time.Duration, now func() time.Time) *RepeatHandler {
	if now == nil {
		now = time.Now
	}
	return &RepeatHandler{inner: inner, st: &repeatState{window: window, now: now, seen: map[string]*repeatEntry{}}}
}

// Enabled implements slog.Handler.
func (h *RepeatHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// WithAttrs implements slog.Handler.
func (h *RepeatHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		b.WriteString(a.String())
		b.WriteByte(0)
	}
	return &RepeatHandler{inner: h.inner.WithAttrs(as), prefix: b.String(), st: h.st}
}

// WithGroup implements slog.Handler.
func (h *RepeatHandler) WithGroup(name string) slog.Handler {
	return &RepeatHandler{inner: h.inner.WithGroup(name), prefix: h.prefix + "group:" + name + "\x00", st: h.st}
}

// Handle implements slog.Handler.
func (h *RepeatHandler) Handle(ctx context.Context, r slog.Record) error {
	now := h.st.now()
	due := h.st.sweep(now)
	for _, e := range due {
		summary := e.last.Clone()
		summary.AddAttrs(slog.Int("repeated", e.suppressed))
		_ = e.handler.Handle(ctx, summary)
	}
	if r.Level < slog.LevelWarn {
		return h.inner.Handle(ctx, r)
	}
	key := h.key(r)
	st := h.st
	st.mu.Lock()
	if e := st.seen[key]; e != nil && now.Sub(e.shown) < st.window {
		e.suppressed++
		e.last = r.Clone()
		st.mu.Unlock()
		return nil
	}
	st.seen[key] = &repeatEntry{shown: now, handler: h.inner}
	st.mu.Unlock()
	return h.inner.Handle(ctx, r)
}

// key is what makes two lines the same: the handler's attributes, the
// level, the message and the record's attributes, not the time.
func (h *RepeatHandler) key(r slog.Record) string {
	var b strings.Builder
	b.WriteString(h.prefix)
	b.WriteString(r.Level.String())
	b.WriteByte(0)
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteByte(0)
		b.WriteString(a.String())
		return true
	})
	return b.String()
}

// sweep removes the windows that have ended (at most once a second, or
// whenever the table is full) and returns those that held lines back,
// for their summary.
func (st *repeatState) sweep(now time.Time) []*repeatEntry {
	st.mu.Lock()
	defer st.mu.Unlock()
	full := len(st.seen) >= maxRepeatKeys
	if !full && now.Sub(st.lastSweep) < time.Second {
		return nil
	}
	st.lastSweep = now
	var due []*repeatEntry
	var oldestKey string
	var oldest time.Time
	for k, e := range st.seen {
		if now.Sub(e.shown) >= st.window {
			if e.suppressed > 0 {
				due = append(due, e)
			}
			delete(st.seen, k)
			continue
		}
		if oldestKey == "" || e.shown.Before(oldest) {
			oldestKey, oldest = k, e.shown
		}
	}
	if len(st.seen) >= maxRepeatKeys && oldestKey != "" {
		if e := st.seen[oldestKey]; e.suppressed > 0 {
			due = append(due, e)
		}
		delete(st.seen, oldestKey)
	}
	return due
}
