// Command newbieha is the newbieha agent and its CLI: init, join, agent,
// status, token, remove, version. See docs/operations.md.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
)

// Build information, set by the Makefile's build target with -ldflags
// "-X main.version=... -X main.revision=... -X main.buildDate=...". A
// plain `go build` leaves revision and buildDate empty; version.go then
// takes them from the VCS stamp Go embeds.
var (
	version   = "dev"
	revision  = ""
	buildDate = ""
)

// gcPercent is the agent's GOGC unless the environment sets one. An idle
// agent keeps 3-4 MB live and allocates mostly short-lived buffers; Go's
// default (100) lets the heap grow to twice the live data before it
// collects. 50 keeps about 1 MiB less resident for about one more
// collection a second (GC 0.15 -> 0.25-0.3 % of a core; docs/benchmarks.md).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}
