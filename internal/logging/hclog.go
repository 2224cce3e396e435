package logging

import (
	"context"
	"io"
	"log"
	"log/slog"
	"runtime"
	"time"

	"github.com/hashicorp/go-hclog"
)

// HCLog returns an hclog.Logger, the interface hashicorp/raft takes, that
// writes into l under the given component. floor raises the lowest level
// passed on (operator commands use slog.LevelError so that Raft's
// start-up warnings, normal while a one-node cluster elects itself, do
// not reach the operator); use LevelTrace to pass everything l takes.
func HCLog(l *slog.Logger, component string, floor slog.Level) hclog.Logger {
	return &hclogAdapter{l: l, name: component, floor: floor}
}

type hclogAdapter struct {
	l       *slog.Logger // without the component: log adds it
	name    string       // the component, "raft" or "raft.snapshot"
	floor   slog.Level
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func toSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	case hclog.Off:
		return slog.LevelError + 100
	}
	return slog.LevelInfo
}

func fromSlog(l slog.Level) hclog.Level {
	switch {
	case l <= LevelTrace:
		return hclog.Trace
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	case l <= slog.LevelError:
		return hclog.Error
	}
	return hclog.Off
}

func (a *hclogAdapter) log(level slog.Level, msg string, args []any) {
	if level < a.floor || !enabled(a.l, level) {
		return
	}
	// hclog takes an odd trailing value; slog would call it !BADKEY.
	if len(args)%2 == 1 {
		args = append(args[:len(args):len(args)], nil)
		args[len(args)-2], args[len(args)-1] = "extra", args[len(args)-2]
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // the library's caller, not this adapter
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	if a.name != "" {
		r.AddAttrs(slog.String("component", a.name))
	}
	r.Add(args...)
	_ = a.l.Handler().Handle(context.Background(), r)
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	a.log(toSlog(level), msg, args)
}
func (a *hclogAdapter) Trace(msg string, args ...any) { a.log(LevelTrace, msg, args) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.log(slog.LevelDebug, msg, args) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.log(slog.LevelInfo, msg, args) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.log(slog.LevelWarn, msg, args) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.log(slog.LevelError, msg, args) }

func (a *hclogAdapter) on(l slog.Level) bool { return l >= a.floor && enabled(a.l, l) }
func (a *hclogAdapter) IsTrace() bool        { return a.on(LevelTrace) }
func (a *hclogAdapter) IsDebug() bool        { return a.on(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool         { return a.on(slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool         { return a.on(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool        { return a.on(slog.LevelError) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: a.l.With(args...), name: a.name, floor: a.floor, implied: append(a.implied[:len(a.implied):len(a.implied)], args...)}
}

func (a *hclogAdapter) Name() string { return a.name }

// Named keeps one component attribute, "raft.snapshot" style, as hclog
// joins names.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	full := name
	if a.name != "" {
		full = a.name + "." + name
	}
	return a.ResetNamed(full)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: a.l, name: name, floor: a.floor, implied: a.implied}
}

// SetLevel moves the floor: the slog logger's own level still applies.
func (a *hclogAdapter) SetLevel(level hclog.Level) { a.floor = toSlog(level) }

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []slog.Level{LevelTrace, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if a.on(l) {
			return fromSlog(l)
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	def := slog.LevelInfo
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		def = toSlog(opts.ForceLevel)
	}
	return &levelWriter{l: a.l, component: a.name, def: def, floor: a.floor}
}
