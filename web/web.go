// Package web serves the agent's read-only status page: members with
// their role, Raft state, health, checks and GPUs, the VIP holder and its
// lease, the history and events, and the drills this node ran with a
// timeline of the client outage around each fault. Everything is in the
// binary (no external assets, works offline); the page polls one JSON
// document and redraws. It reads; it has no way to change anything.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"sort"
	"time"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/drill"
	"github.com/newbieha/newbieha/fsm"
)

// Source is what the page shows. The agent provides it.
type Source interface {
	// Status is the cluster as this member sees it (status -o json).
	Status(ctx context.Context) cluster.Status
	// History and Events are the replicated history, oldest first.
	History() []fsm.Transition
	Events() []fsm.Event
	// Drills are the full reports of the drills run from this node.
	Drills() ([]DrillReport, error)
}

// DrillReport is one drill's report with its ID.
type DrillReport struct {
	ID     string
	Report drill.Report
}

// How much of the history the page shows (newest first).
const (
	maxHistory = 50
	maxEvents  = 50
	maxDrills  = 10
)

//go:embed assets
var assets embed.FS

// State is the document the page polls (GET /ui/state).
type State struct {
	Now    time.Time      `json:"now"`
	Status cluster.Status `json:"status"`
	// Problems are why status would exit 1 (Status.Problems).
	Problems []string         `json:"problems"`
	History  []fsm.Transition `json:"history"` // newest first
	Events   []fsm.Event      `json:"events"`  // newest first
	Drills   []DrillView      `json:"drills"`  // newest first
	// DrillsError says why this node's drill reports could not be read.
	DrillsError string `json:"drills_error,omitempty"`
}

// DrillView is one drill as the page shows it: its figures and the
// timeline chart the agent rendered (SVG markup, every text escaped).
type DrillView struct {
	ID       string        `json:"id"`
	Runbook  string        `json:"runbook"`
	Operator string        `json:"operator,omitempty"`
	Start    time.Time     `json:"start"`
	Verdict  drill.Verdict `json:"verdict"`
	Abort    string        `json:"abort_reason,omitempty"`
	Figures  drill.Figures `json:"figures"`
	SVG      string        `json:"svg"`
}

// Handler serves the page at / and its state at /ui/state. source
// returns nil until the agent runs (the page then says so). Only GET and
// HEAD are served.
func Handler(source func() Source) http.Handler {
	static, _ := fs.Sub(assets, "assets")
	mux := http.NewServeMux()
	files := http.FileServerFS(static)
	for _, p := range []string{"GET /ui/app.js", "GET /ui/app.css"} {
		mux.Handle(p, http.StripPrefix("/ui", files))
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(static, "index.html")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /ui/state", func(w http.ResponseWriter, r *http.Request) {
		src := source()
		if src == nil {
			http.Error(w, "the agent is starting", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		st := Collect(ctx, src)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	return secure(mux)
}

// Collect builds the page's state from src.
func Collect(ctx context.Context, src Source) State {
	st := State{Now: time.Now().UTC(), Status: src.Status(ctx)}
	st.Problems = st.Status.Problems()
	if st.Problems == nil {
		st.Problems = []string{}
	}
	st.History = newestFirst(src.History(), maxHistory)
	st.Events = newestFirst(src.Events(), maxEvents)
	reps, err := src.Drills()
	if err != nil {
		st.DrillsError = err.Error()
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].Report.Start.After(reps[j].Report.Start) })
	if len(reps) > maxDrills {
		reps = reps[:maxDrills]
	}
	st.Drills = []DrillView{}
	for _, d := range reps {
		r := d.Report
		st.Drills = append(st.Drills, DrillView{ID: d.ID, Runbook: r.Runbook, Operator: r.Operator, Start: r.Start,
			Verdict: r.Verdict, Abort: r.AbortReason, Figures: r.Figures, SVG: Timeline(&r)})
	}
	return st
}

func newestFirst[T any](in []T, max int) []T {
	out := make([]T, 0, min(len(in), max))
	for i := len(in) - 1; i >= 0 && len(out) < max; i-- {
		out = append(out, in[i])
	}
	return out
}

// secure refuses every method but GET and HEAD and sets the headers of a
// page that loads nothing from elsewhere: a strict content security
// policy (its own script and style only), no framing, no caching, no
// MIME sniffing.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the status page is read-only", http.StatusMethodNotAllowed)
			return
		}
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
