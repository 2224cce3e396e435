package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo is what `newbieha version` prints.
type buildInfo struct {
	Version   string `json:"version"`    // release version, "dev" for a build from a work tree
	Revision  string `json:"revision"`   // git commit, "-dirty" appended for uncommitted changes
	BuildDate string `json:"build_date"` // RFC 3339, UTC
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// readBuildInfo returns the values the Makefile set with -ldflags -X,
// filling revision and build date, where those are empty (a plain go
// build), from the VCS stamp the go command embeds (vcs.revision,
// vcs.modified, vcs.time: the commit's time, not the build's).
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Revision: revision, BuildDate: buildDate, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok && (b.Revision == "" || b.BuildDate == "") {
		var rev, modified, vcsTime string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				vcsTime = s.Value
			}
		}
		if b.Revision == "" && rev != "" {
			b.Revision = rev
			if modified == "true" {
				b.Revision += "-dirty"
			}
		}
		if b.BuildDate == "" && vcsTime != "" {
			b.BuildDate = vcsTime + " (commit time)"
		}
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	if b.BuildDate == "" {
		b.BuildDate = "unknown"
	}
	return b
}

// printVersion writes b, the version on the first line alone.
func printVersion(w io.Writer, b buildInfo) {
	fmt.Fprintf(w, "newbieha %s\nrevision:   %s\nbuild date: %s\ngo:         %s %s\n", b.Version, b.Revision, b.BuildDate, b.GoVersion, b.Platform)
}
