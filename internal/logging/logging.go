// Package logging builds the agent's one logger on log/slog and routes
// the libraries' own loggers into it: hashicorp/raft's hclog interface
// (HCLog) and memberlist's and net/http's standard *log.Logger (StdLog),
// each line at the level it was written with. Repeated warnings and
// errors are printed once per window and then summarised with a count
// (repeat.go), so a peer that stays down does not flood the journal.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// LevelTrace is below slog's Debug, for hclog's Trace (Raft's and the
// lease's per-message lines).
const LevelTrace = slog.LevelDebug - 4

// Formats and levels the node config's log_format and log_level take.
var (
	Formats = []string{"text", "json"}
	Levels  = []string{"trace", "debug", "info", "warn", "error"}
)

// ParseLevel reads a log_level value; "" means info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not %s", s, strings.Join(Levels, ", "))
}

// ValidFormat reports whether s is a log_format value; "" means text.
func ValidFormat(s string) bool { return s == "" || s == "text" || s == "json" }

// Options says how New builds a logger.
type Options struct {
	// Format is "text" (logfmt-style key=value, the default) or "json"
	// (one object a line, for journald's or a collector's parsers).
	Format string
	// Level is the lowest level written.
	Level slog.Level
	// Output receives the lines; nil means io.Discard.
	Output io.Writer
	// RepeatWindow is how long a repeated warning or error is held back
	// after it was printed; 0 means DefaultRepeatWindow, <0 turns the
	// suppression off.
	RepeatWindow time.Duration
}

// New returns the logger Options describe.
func New(o Options) (*slog.Logger, error) {
	if !ValidFormat(o.Format) {
		return nil, fmt.Errorf("log format %q is not %s", o.Format, strings.Join(Formats, " or "))
	}
	w := o.Output
	if w == nil {
		w = io.Discard
	}
	ho := &slog.HandlerOptions{Level: o.Level, ReplaceAttr: levelNames}
	var h slog.Handler
	if o.Format == "json" {
		h = slog.NewJSONHandler(w, ho)
	} else {
		h = slog.NewTextHandler(w, ho)
	}
	switch {
	case o.RepeatWindow == 0:
		h = NewRepeatHandler(h, DefaultRepeatWindow, nil)
	case o.RepeatWindow > 0:
		h = NewRepeatHandler(h, o.RepeatWindow, nil)
	}
	return slog.New(h), nil
}

// Discard returns a logger that writes nothing (tests, offline helpers).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Named returns l with the component attribute set: the part of the
// agent a line comes from ("raft", "lease", "vip", ...).
func Named(l *slog.Logger, component string) *slog.Logger {
	return l.With("component", component)
}

// levelNames prints LevelTrace as TRACE rather than slog's DEBUG-4.
func levelNames(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.LevelKey && len(groups) == 0 {
		if l, ok := a.Value.Any().(slog.Level); ok && l <= LevelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	}
	return a
}

// enabled is a short form used by the adapters.
func enabled(l *slog.Logger, level slog.Level) bool {
	return l.Enabled(context.Background(), level)
}

// ForCommand is the logger of an operator command (init, join, raft
// recover, snapshot restore): warnings and errors only, without the
// time, on w (the command's stderr). Libraries under it get the floor
// slog.LevelError (see HCLog), so the operator reads only what needs
// them.
func ForCommand(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}}))
}
