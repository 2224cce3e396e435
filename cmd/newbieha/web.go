package main

import (
	"context"
	"path/filepath"
	"sync/atomic"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
	"github.com/newbieha/newbieha/web"
)

// webSource feeds the status page (package web) from the running agent
// and the drill reports in its data dir; nil until the agent has started.
type webSource struct {
	agent atomic.Pointer[cluster.Agent]
	store reportStore
}

func newWebSource(dataDir string) *webSource {
	return &webSource{store: reportStore{dir: filepath.Join(dataDir, "drills")}}
}

func (s *webSource) get() web.Source {
	if s.agent.Load() == nil {
		return nil
	}
	return s
}

func (s *webSource) Status(ctx context.Context) cluster.Status { return s.agent.Load().Status(ctx) }
func (s *webSource) History() []fsm.Transition {
	return s.agent.Load().FSM().State().History
}
func (s *webSource) Events() []fsm.Event { return s.agent.Load().FSM().State().Events }

func (s *webSource) Drills() ([]web.DrillReport, error) {
	reps, err := s.store.all()
	out := make([]web.DrillReport, 0, len(reps))
	for _, r := range reps {
		out = append(out, web.DrillReport{ID: r.id, Report: *r.rep})
	}
	return out, err
}
