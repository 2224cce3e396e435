package web

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/drill"
	"github.com/newbieha/newbieha/fsm"
)

type fakeSource struct {
	st      cluster.Status
	history []fsm.Transition
	events  []fsm.Event
	drills  []DrillReport
	err     error
}

func (f *fakeSource) Status(context.Context) cluster.Status { return f.st }
func (f *fakeSource) History() []fsm.Transition             { return f.history }
func (f *fakeSource) Events() []fsm.Event                   { return f.events }
func (f *fakeSource) Drills() ([]DrillReport, error)        { return f.drills, f.err }

const hostile = `<script>alert(1)</script>"'&`

func testReport(runbook string, start time.Time, failed int) drill.Report {
	r := drill.Report{Runbook: runbook, Start: start, Verdict: drill.VerdictPassed,
		Figures: drill.Figures{DurationMs: 10000, Requests: 500, FailedRequests: failed, OutageMs: 420}}
	r.Timeline = []drill.TimelineEntry{
		{OffsetMs: 0, What: "start: active node1, standby node2"},
		{OffsetMs: 1000, What: "steps[0] fault in place"},
		{OffsetMs: 6000, What: "steps[0] fault undone"},
		{OffsetMs: 1400, What: "holder node1 → node2"},
		{OffsetMs: 10000, What: "end"},
	}
	if failed > 0 {
		r.Timeline = append(r.Timeline,
			drill.TimelineEntry{OffsetMs: 1010, What: "first failed request (timeout)"},
			drill.TimelineEntry{OffsetMs: 1430, What: "last failed request (timeout)"})
	}
	return r
}

func newFake() *fakeSource {
	t0 := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	return &fakeSource{
		st: cluster.Status{Node: "witness", Leader: "node1", Active: fsm.Assignment{Node: "node2", Epoch: 3},
			VIP: cluster.VIPStatus{Address: "10.0.0.100/24", Holder: "node2"},
			Members: []cluster.MemberStatus{
				{Name: "node1", Role: fsm.RoleGPU, Raft: cluster.RaftLeader, Voter: true, Answered: true, Healthy: true},
				{Name: "node2", Role: fsm.RoleGPU, Raft: cluster.RaftFollower, Voter: true, Answered: true, Healthy: true, HoldsVIP: true},
				{Name: "witness", Role: fsm.RoleWitness, Raft: cluster.RaftFollower, Voter: true, Answered: true},
			}},
		history: []fsm.Transition{{Epoch: 1, To: "node1", Reason: "startup", Time: t0}, {Epoch: 2, From: "node1", To: "node2", Reason: "manual:failover", Time: t0.Add(time.Minute)},
			{Epoch: 3, From: "node2", To: "node2", Reason: "manual:" + hostile, Time: t0.Add(2 * time.Minute)}},
		events: []fsm.Event{{Kind: "operator", Node: "node1", Detail: "alice: maintenance on: " + hostile, Time: t0}},
		drills: []DrillReport{{ID: "a", Report: testReport("gpu-fails", t0, 3)}, {ID: "b", Report: testReport(hostile, t0.Add(time.Hour), 0)}},
	}
}

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestHandler_ServesThePageItsAssetsAndTheState(t *testing.T) {
	src := newFake()
	h := Handler(func() Source { return src })
	page := get(t, h, http.MethodGet, "/")
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `<table id="members">`) || !strings.Contains(page.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s\n%s", page.Code, page.Header(), page.Body)
	}
	if csp := page.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	for path, ctype := range map[string]string{"/ui/app.js": "javascript", "/ui/app.css": "text/css"} {
		r := get(t, h, http.MethodGet, path)
		if r.Code != http.StatusOK || !strings.Contains(r.Header().Get("Content-Type"), ctype) || r.Body.Len() < 100 {
			t.Fatalf("GET %s: %d %q %d bytes", path, r.Code, r.Header().Get("Content-Type"), r.Body.Len())
		}
	}
	// Nothing on the page loads from elsewhere.
	for _, path := range []string{"/", "/ui/app.js", "/ui/app.css"} {
		if b := get(t, h, http.MethodGet, path).Body.String(); strings.Contains(b, "http://") || strings.Contains(b, "https://") {
			t.Fatalf("%s refers to another site", path)
		}
	}
	r := get(t, h, http.MethodGet, "/ui/state")
	var st State
	if err := json.Unmarshal(r.Body.Bytes(), &st); err != nil || r.Code != http.StatusOK {
		t.Fatalf("GET /ui/state: %d %v\n%s", r.Code, err, r.Body)
	}
	if len(st.Status.Members) != 3 || st.Status.VIP.Holder != "node2" || len(st.Problems) != 0 {
		t.Fatalf("state %+v", st)
	}
	if len(st.History) != 3 || st.History[0].Epoch != 3 || st.Events[0].Kind != "operator" {
		t.Fatalf("history %+v events %+v: want newest first", st.History, st.Events)
	}
	if len(st.Drills) != 2 || st.Drills[0].ID != "b" || st.Drills[1].Figures.FailedRequests != 3 {
		t.Fatalf("drills %+v: want newest first with figures", st.Drills)
	}
	// A degraded cluster carries its problems.
	src.st.VIP.Holder = ""
	if err := json.Unmarshal(get(t, h, http.MethodGet, "/ui/state").Body.Bytes(), &st); err != nil || len(st.Problems) == 0 || !strings.Contains(st.Problems[0], "nobody holds") {
		t.Fatalf("problems %v, %v", st.Problems, err)
	}
	src.err = errors.New("permission denied")
	if err := json.Unmarshal(get(t, h, http.MethodGet, "/ui/state").Body.Bytes(), &st); err != nil || st.DrillsError != "permission denied" {
		t.Fatalf("drills error %q, %v", st.DrillsError, err)
	}
}

func TestHandler_ReadOnlyAndStarting(t *testing.T) {
	h := Handler(func() Source { return nil })
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		for _, p := range []string{"/", "/ui/state"} {
			if r := get(t, h, m, p); r.Code != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", m, p, r.Code)
			}
		}
	}
	if r := get(t, h, http.MethodGet, "/ui/state"); r.Code != http.StatusServiceUnavailable {
		t.Fatalf("state before the agent runs: %d", r.Code)
	}
	if r := get(t, h, http.MethodGet, "/ui/../../etc/passwd"); r.Code == http.StatusOK && strings.Contains(r.Body.String(), "root:") {
		t.Fatal("path traversal")
	}
	if r := get(t, h, http.MethodGet, "/nothing"); r.Code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", r.Code)
	}
}

// The timeline is well-formed SVG: a bar for the fault, the outage band
// only when requests failed, a line per holder change; text from the
// report is escaped.
func TestTimeline_SVG(t *testing.T) {
	for _, tt := range []struct {
		name    string
		r       drill.Report
		outages int
	}{
		{"with an outage", testReport("gpu-fails", time.Now(), 3), 1},
		{"without", testReport(hostile, time.Now(), 0), 0},
	} {
		svg := Timeline(&tt.r)
		if strings.Contains(svg, "<script") {
			t.Fatalf("%s: unescaped text in %s", tt.name, svg)
		}
		counts := map[string]int{}
		dec := xml.NewDecoder(strings.NewReader(svg))
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed: %v\n%s", tt.name, err, svg)
			}
			if se, ok := tok.(xml.StartElement); ok {
				for _, a := range se.Attr {
					if a.Name.Local == "class" {
						counts[se.Name.Local+"."+a.Value]++
					}
				}
			}
		}
		if counts["rect.fault"] != 1 || counts["rect.outage"] != tt.outages || counts["line.holder"] != 1 || counts["line.tick"] < 3 {
			t.Fatalf("%s: elements %v", tt.name, counts)
		}
	}
}
