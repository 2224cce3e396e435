package health

import (
	"context"
	"strings"
	"unicode/utf8"
)

// Sample is the outcome of one run of a check, before rise/fall.
type Sample struct {
	// OK is true when the sample succeeded.
	OK bool
	// Output says what was seen; the Runner keeps at most MaxOutput bytes.
	Output string
}

// Prober takes one sample of a check. The Runner calls Probe from one
// goroutine per check, never concurrently for the same check, with a
// context that ends at the check's timeout; Probe must return soon after
// the context ends.
type Prober interface {
	Probe(ctx context.Context) Sample
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context) Sample

// Probe calls f(ctx).
func (f ProberFunc) Probe(ctx context.Context) Sample { return f(ctx) }

// tailBuffer is an io.Writer that keeps only the last max bytes written.
// It is not safe for concurrent use; os/exec serialises writes when Stdout
// and Stderr are the same writer.
type tailBuffer struct {
	max     int
	buf     []byte
	dropped bool
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.dropped = t.dropped || len(t.buf) > 0 || len(p) > t.max
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.dropped = true
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String returns the kept bytes, prefixed with "…" when earlier output was
// dropped, with any partial UTF-8 sequence at the cut removed.
func (t *tailBuffer) String() string {
	b := t.buf
	if t.dropped {
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
		return "…" + string(b)
	}
	return string(b)
}

// truncate keeps the first max bytes of s (cut at a rune boundary), marking
// a cut with "…".
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// oneLine folds s onto one line for outputs that quote a response body.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
