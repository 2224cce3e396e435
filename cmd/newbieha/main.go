// Command newbieha is the newbieha agent and its CLI: init, join, agent,
// status, token, remove, version. See docs/operations.md.
package main

import (
	"fmt"
	"os"
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

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}
