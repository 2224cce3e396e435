package logging

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"time"
)

// StdLog returns a standard *log.Logger (memberlist's and net/http's
// kind) that writes each line into l under the given component. A line
// that starts with a level in brackets, as memberlist writes them
// ("[WARN] memberlist: ..."), is logged at that level without the
// prefix; any other line at def. Lines below floor are dropped.
func StdLog(l *slog.Logger, component string, def, floor slog.Level) *log.Logger {
	return log.New(&levelWriter{l: l, component: component, def: def, floor: floor}, "", 0)
}

type levelWriter struct {
	l         *slog.Logger
	component string
	def       slog.Level
	floor     slog.Level
}

var levelPrefixes = []struct {
	prefix string
	level  slog.Level
}{
	{"[TRACE]", LevelTrace},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[WARNING]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// Write takes one line (log.Logger calls it once a line).
func (w *levelWriter) Write(p []byte) (int, error) {
	n := len(p)
	line := bytes.TrimRight(p, "\r\n")
	level := w.def
	for _, lp := range levelPrefixes {
		if rest, ok := bytes.CutPrefix(line, []byte(lp.prefix)); ok {
			level, line = lp.level, bytes.TrimLeft(rest, " ")
			break
		}
	}
	if level < w.floor || !enabled(w.l, level) {
		return n, nil
	}
	r := slog.NewRecord(time.Now(), level, string(line), 0)
	if w.component != "" {
		r.AddAttrs(slog.String("component", w.component))
	}
	_ = w.l.Handler().Handle(context.Background(), r)
	return n, nil
}
