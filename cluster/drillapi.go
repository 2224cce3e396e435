package cluster

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/newbieha/newbieha/fsm"
)

// DrillEventKind is the kind of the history events that record a
// runbook drill's start and end (`newbieha drill run`).
const DrillEventKind = "drill-run"

// The phases of a drill a DrillEventRequest records.
const (
	DrillPhaseStart = "start"
	DrillPhaseEnd   = "end"
)

// DrillEventRequest records a drill's start or end in the replicated
// history, as an event of kind DrillEventKind with the caller's name.
type DrillEventRequest struct {
	// ID names the run; its report is stored under it on the machine that
	// ran it.
	ID      string `json:"id"`
	Runbook string `json:"runbook"`
	// Phase is DrillPhaseStart or DrillPhaseEnd.
	Phase string `json:"phase"`
	// Until is, at the start, the latest the drill can end (its time
	// limit): until then, or its end, the drill counts as running.
	Until time.Time `json:"until,omitempty"`
	// Summary is, at the end, the report in one line.
	Summary string `json:"summary,omitempty"`
}

var (
	drillIDRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$`)
	drillRunbookRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

func (r DrillEventRequest) validate() error {
	if !drillIDRE.MatchString(r.ID) {
		return fmt.Errorf("id %q: want letters, digits, '.', '_' and '-', at most 80", r.ID)
	}
	if !drillRunbookRE.MatchString(r.Runbook) {
		return fmt.Errorf("runbook %q: want lowercase letters, digits and '-', at most 63", r.Runbook)
	}
	switch r.Phase {
	case DrillPhaseStart:
		if r.Until.IsZero() {
			return fmt.Errorf("a start needs until, the latest the drill can end")
		}
		// Recorded in UTC and read back by ParseDrillEvent: a year outside
		// 1..9999 there would never read back, and the drill would not
		// count as running.
		if y := r.Until.UTC().Year(); y < 2000 || y > 9999 {
			return fmt.Errorf("until %s: year %d in UTC, want 2000..9999", r.Until.Format(time.RFC3339), y)
		}
	case DrillPhaseEnd:
		if !utf8.ValidString(r.Summary) {
			return fmt.Errorf("summary is not UTF-8")
		}
	default:
		return fmt.Errorf("phase %q: want %s or %s", r.Phase, DrillPhaseStart, DrillPhaseEnd)
	}
	return nil
}

// detail is the event's text after the caller's name: "drill ID start,
// runbook NAME, until T" or "drill ID end: SUMMARY".
func (r DrillEventRequest) detail() string {
	if r.Phase == DrillPhaseStart {
		return fmt.Sprintf("drill %s start, runbook %s, until %s", r.ID, r.Runbook, r.Until.UTC().Format(time.RFC3339Nano))
	}
	s := strings.ReplaceAll(r.Summary, "\n", " ")
	if s == "" {
		s = "no summary"
	}
	return fmt.Sprintf("drill %s end: %s", r.ID, s)
}

var (
	drillStartRE = regexp.MustCompile(`^(.*?): drill (\S+) start, runbook (\S+), until (\S+)$`)
	drillEndRE   = regexp.MustCompile(`^(.*?): drill (\S+) end: (.*)$`)
)

// ParseDrillEvent reads back an event recorded by POST /v1/drill/event:
// ok is false for any other event. Caller is who recorded it.
func ParseDrillEvent(ev fsm.Event) (req DrillEventRequest, caller string, ok bool) {
	if ev.Kind != DrillEventKind {
		return DrillEventRequest{}, "", false
	}
	if m := drillStartRE.FindStringSubmatch(ev.Detail); m != nil {
		until, err := time.Parse(time.RFC3339Nano, m[4])
		if err != nil {
			return DrillEventRequest{}, "", false
		}
		return DrillEventRequest{ID: m[2], Runbook: m[3], Phase: DrillPhaseStart, Until: until}, m[1], true
	}
	if m := drillEndRE.FindStringSubmatch(ev.Detail); m != nil {
		return DrillEventRequest{ID: m[2], Phase: DrillPhaseEnd, Summary: m[3]}, m[1], true
	}
	return DrillEventRequest{}, "", false
}

// handleDrillEvent records a drill's start or end (operators only; the
// event names this member, which commits it through the leader).
func (o *operatorAPI) handleDrillEvent(w http.ResponseWriter, r *http.Request) {
	var req DrillEventRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := req.validate(); err != nil {
		writeError(w, fmt.Errorf("%w: drill event: %w", ErrBadRequest, err))
		return
	}
	detail := callerOf(r).name + ": " + req.detail()
	if len(detail) > fsm.MaxReasonLen {
		cut := fsm.MaxReasonLen - len("…")
		for cut > 0 && !utf8.RuneStart(detail[cut]) {
			cut--
		}
		detail = detail[:cut] + "…"
	}
	ev := fsm.Event{Kind: DrillEventKind, Node: o.a.Name(), Detail: detail, Time: o.a.cfg.Now().UTC()}
	if err := o.a.apply(r.Context(), fsm.RecordEvent{Event: ev}); err != nil {
		writeError(w, fmt.Errorf("record drill event: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// MaxPartition is the longest a drilled partition may last.
const MaxPartition = time.Hour

// DrillPartitionRequest cuts Node off from the members in From for For,
// by firewall rules on Node that the kernel expires by itself; with Clear
// it removes them at once (For is then ignored).
type DrillPartitionRequest struct {
	Node  string   `json:"node"` // "" means the node that receives it
	From  []string `json:"from"` // member names
	For   Duration `json:"for"`
	Clear bool     `json:"clear,omitempty"`
}

// handleDrillPartition carries out a DrillPartitionRequest on its node
// (forwarded there like drill inject).
func (o *operatorAPI) handleDrillPartition(w http.ResponseWriter, r *http.Request) {
	a := o.a
	var req DrillPartitionRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !req.Clear && (req.For <= 0 || time.Duration(req.For) > MaxPartition) {
		writeError(w, fmt.Errorf("%w: for %v must be between 1s and %v", ErrBadRequest, time.Duration(req.For), MaxPartition))
		return
	}
	if len(req.From) == 0 || len(req.From) > 8 {
		writeError(w, fmt.Errorf("%w: from: name 1 to 8 members to cut off", ErrBadRequest))
		return
	}
	if o.toNode(w, r, req.Node, req) {
		return
	}
	var peers []string
	for _, name := range req.From {
		m, ok := a.node.fsm.Member(name)
		if !ok {
			writeError(w, fmt.Errorf("%w: from: %q", ErrUnknownMember, name))
			return
		}
		if name == a.Name() {
			writeError(w, fmt.Errorf("%w: from: %s is this node", ErrBadRequest, name))
			return
		}
		host, _, err := net.SplitHostPort(m.APIAddr)
		if err != nil || net.ParseIP(host) == nil {
			writeError(w, fmt.Errorf("%w: from: %s has no IP address (%q)", ErrBadRequest, name, m.APIAddr))
			return
		}
		peers = append(peers, host)
	}
	if a.cfg.Partition == nil {
		writeError(w, fmt.Errorf("%w: %s cannot drill partitions", ErrBadRequest, a.Name()))
		return
	}
	until := time.Now().Add(time.Duration(req.For))
	what := fmt.Sprintf("drill partition on %s: cut off from %s for %v", a.Name(), strings.Join(req.From, ", "), time.Duration(req.For))
	if req.Clear {
		until = time.Time{}
		what = fmt.Sprintf("drill partition on %s: cut from %s removed", a.Name(), strings.Join(req.From, ", "))
	}
	if req.Clear {
		if err := a.cfg.Partition(peers, until, false); err != nil {
			writeError(w, fmt.Errorf("drill partition: %w", err))
			return
		}
		a.log.Warn("drill: "+what, "by", callerOf(r).name)
		o.audit(r, what)
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	// The cut may include the caller (an operator on the witness): check
	// that the rules load, record it and answer first, then cut, so the
	// answer is not lost behind the cut.
	if err := a.cfg.Partition(peers, until, true); err != nil {
		writeError(w, fmt.Errorf("drill partition: %w", err))
		return
	}
	a.log.Warn("drill: "+what, "by", callerOf(r).name)
	o.audit(r, what)
	// The caller has its answer before the cut drops anything.
	writeWholeOK(w)
	if err := a.cfg.Partition(peers, until, false); err != nil {
		a.log.Error("drill: partition failed after it was checked", "error", err)
	}
}

// writeWholeOK writes a complete 200 answer ({} with its length, the
// connection not kept) and flushes it: once it returns the caller has it
// all, whatever a partition or a crash does to the connection after.
func writeWholeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "3")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "{}\n")
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
}
