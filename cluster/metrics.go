package cluster

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/fsm"
)

// Metrics (docs/metrics.md lists every series).
//
// Each scrape builds a fresh prometheus.Registry of this agent's own (never
// the global one) holding the Go and process collectors and agentCollector.
// agentCollector keeps nothing: it reads, at scrape time, the state its
// owners keep — raft.Stats(), the applied FSM state, the lease runner, the
// controller, the health reporter. The few figures that must be counted as
// they happen (lease rounds, refused grants) are counted by their owner in a
// small struct defined here (leaseStats), and failovers are counted from the
// replicated history (failoverTally), so no goroutine and no global state
// exist for metrics. A registry per scrape costs microseconds; a scrape
// comes every few seconds at most.

// handleMetrics writes this agent's metrics in the Prometheus exposition
// format (text, or what the scraper negotiates). Served on
// Config.Node.MetricsAddr (plain HTTP, off by default) and at /v1/metrics
// on the API.
func (a *Agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	reg := a.metricsRegistry()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
}

// writeMetrics writes one scrape in the text format.
func (a *Agent) writeMetrics(w io.Writer) error {
	mfs, err := a.metricsRegistry().Gather()
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if eerr := enc.Encode(mf); eerr != nil {
			return eerr
		}
	}
	return err
}

// metricsRegistry returns a new registry with this agent's collectors.
func (a *Agent) metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newAgentCollector(a),
	)
	return reg
}

// leaseRoundBuckets are the bounds of the lease round latency histogram in
// seconds: a round is one request/answer to a majority of voters, a few
// hundred microseconds on a LAN; the top bound is lease.MaxDuration.
var leaseRoundBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 3}

// leaseStats counts what the lease runner's holder does between scrapes.
// The zero value is ready; the runner calls tick and answered with its own
// lock held, the collector reads snapshot.
type leaseStats struct {
	mu         sync.Mutex
	roundStart time.Duration // the clock at the start of the open round
	open       bool          // a round has started and has not reached a majority
	started    uint64
	buckets    []uint64 // per leaseRoundBuckets, not cumulative
	count      uint64
	sum        float64
	refused    map[string]uint64 // by voter
}

// tick notes a round started at now when out sends lease requests.
func (s *leaseStats) tick(now time.Duration, out lease.Output) {
	for _, e := range out.Send {
		if !e.Req.Release {
			s.mu.Lock()
			s.started++
			s.roundStart, s.open = now, true
			s.mu.Unlock()
			return
		}
	}
}

// answered notes a voter's answer taken at now and the holder's output
// for it: a refusal is counted by voter (a name outside voters counts as
// "other"), and a round that reached its majority (out.Hold) is observed.
func (s *leaseStats) answered(now time.Duration, a lease.Answer, voters []string, out lease.Output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !a.Granted {
		v := a.Voter
		if !slices.Contains(voters, v) {
			v = "other"
		}
		if s.refused == nil {
			s.refused = map[string]uint64{}
		}
		s.refused[v]++
	}
	if out.Hold && s.open {
		s.open = false
		d := (now - s.roundStart).Seconds()
		if s.buckets == nil {
			s.buckets = make([]uint64, len(leaseRoundBuckets))
		}
		for i, b := range leaseRoundBuckets {
			if d <= b {
				s.buckets[i]++
				break
			}
		}
		s.count++
		s.sum += d
	}
}

// leaseSnapshot is a copy of leaseStats.
type leaseSnapshot struct {
	started uint64
	count   uint64
	sum     float64
	buckets map[float64]uint64 // cumulative, as prometheus wants them
	refused map[string]uint64
}

func (s *leaseStats) snapshot() leaseSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := leaseSnapshot{started: s.started, count: s.count, sum: s.sum, buckets: map[float64]uint64{}, refused: maps.Clone(s.refused)}
	var cum uint64
	for i, b := range leaseRoundBuckets {
		if s.buckets != nil {
			cum += s.buckets[i]
		}
		out.buckets[b] = cum
	}
	return out
}

// failoverTally counts the changes of the active node by reason from the
// replicated history: every path that names a node active (the
// controller's moves, a manual failover, an agent stopping) is a SetActive
// recorded there, on every node alike. The history keeps the last
// fsm.HistoryLimit entries, so a scrape at least every thousand failovers
// misses none. The first scrape counts the whole history, so the counter is
// a cluster-wide figure; a restore to an older state resets it.
type failoverTally struct {
	mu     sync.Mutex
	last   uint64 // Raft index of the newest transition counted
	counts map[string]uint64
}

func (t *failoverTally) count(h []fsm.Transition) map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(h); n > 0 && h[n-1].Index < t.last {
		t.last, t.counts = 0, nil // the state went back (a snapshot restore)
	}
	for _, tr := range h {
		if tr.Index <= t.last {
			continue
		}
		if t.counts == nil {
			t.counts = map[string]uint64{}
		}
		t.counts[reasonPrefix(tr.Reason)]++
		t.last = tr.Index
	}
	return maps.Clone(t.counts)
}

// knownReasons are the reason prefixes exported at 0 before the first
// failover of their kind: the controller's, a manual failover's (ops.go)
// and an agent stopping's.
var knownReasons = []string{lease.ReasonStartup, lease.ReasonHolderLost, lease.ReasonHealth, lease.ReasonPreempt, lease.ReasonMemberRemoved, "manual", "stop"}

var reasonWord = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// reasonPrefix is the part of a history reason before ':' ("manual" of
// "manual:failover", "stop" of "stop:node1"); anything that is not a short
// lower-case word is "other", so the label stays bounded.
func reasonPrefix(reason string) string {
	p, _, _ := strings.Cut(reason, ":")
	if !reasonWord.MatchString(p) {
		return "other"
	}
	return p
}

// agentCollector reads an agent's state at scrape time.
type agentCollector struct {
	a     *Agent
	descs map[string]*prometheus.Desc
}

// metricSpec is one series family of agentCollector.
type metricSpec struct {
	name, help string
	labels     []string
}

var agentMetricSpecs = []metricSpec{
	{"newbieha_build_info", "The agent's build: version, git revision and Go version (always 1).", []string{"version", "revision", "goversion"}},
	{"newbieha_info", "Static information about this node (always 1).", []string{"name", "role"}},
	{"newbieha_raft_leader", "1 if this node is the Raft leader.", nil},
	{"newbieha_raft_has_leader", "1 if this node knows a Raft leader.", nil},
	{"newbieha_raft_state", "1 for this node's Raft state (Follower, Candidate, Leader, Shutdown), 0 for the others.", []string{"state"}},
	{"newbieha_raft_term", "Raft's current term.", nil},
	{"newbieha_raft_last_log_index", "Index of the last entry in this node's Raft log.", nil},
	{"newbieha_raft_commit_index", "Raft's commit index as this node knows it.", nil},
	{"newbieha_raft_applied_index", "Index of the last entry applied to this node's FSM.", nil},
	{"newbieha_raft_last_snapshot_index", "Index of this node's last Raft snapshot.", nil},
	{"newbieha_raft_fsm_pending", "Committed entries waiting to be applied to the FSM.", nil},
	{"newbieha_raft_peers", "Other voters in this node's Raft configuration.", nil},
	{"newbieha_raft_last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader; absent before the first contact).", nil},
	{"newbieha_active", "1 if the replicated state names this node active.", nil},
	{"newbieha_epoch", "Epoch of the current active assignment.", nil},
	{"newbieha_members", "Members in the replicated state.", nil},
	{"newbieha_member_up", "1 if this node sees the member alive (gossip; always 1 for itself).", []string{"member", "role"}},
	{"newbieha_maintenance", "1 if maintenance mode is on.", nil},
	{"newbieha_blocked", "1 if the leader leaves an unhealthy or lost active node in place.", nil},
	{"newbieha_transitions_total", "Changes of the active node kept in the history (at most fsm.HistoryLimit; use newbieha_failovers_total).", nil},
	{"newbieha_failovers_total", "Changes of the active node in the replicated history, by the reason's prefix (startup, health, holder-lost, preempt, member-removed, manual, stop, ...).", []string{"reason"}},
	{"newbieha_vip_configured", "1 if the cluster settings have a VIP.", nil},
	{"newbieha_vip_held", "1 if the VIP is on this host.", nil},
	{"newbieha_vip_conflict", "1 if the last ARP probe found another host answering for the VIP.", nil},
	{"newbieha_vip_conflict_probes_total", "ARP probes that found a VIP conflict.", nil},
	{"newbieha_lease_epoch", "Epoch this node runs lease rounds for (0: not active).", nil},
	{"newbieha_lease_remaining_seconds", "Time left on this holder's lease, until its fence deadline (0: none).", nil},
	{"newbieha_lease_duration_seconds", "The lease duration of the applied settings (lease_duration).", nil},
	{"newbieha_lease_grant_remaining_seconds", "Time left on the grant this node's voter gave (absent when none is live).", []string{"holder"}},
	{"newbieha_lease_quarantine_seconds", "Time this node's voter still grants nothing after its start.", nil},
	{"newbieha_lease_rounds_total", "Lease rounds this holder started.", nil},
	{"newbieha_lease_round_duration_seconds", "Time from the start of a lease round to the answer that made a majority.", nil},
	{"newbieha_lease_grants_refused_total", "Lease requests of this holder that a voter refused, by voter.", []string{"voter"}},
	{"newbieha_hook_attempts_total", "Attempts of a transition hook to run, by result (ok, error, timeout).", []string{"hook", "kind", "result"}},
	{"newbieha_hook_events_total", "Events of a transition hook by outcome: delivered, failed (every attempt failed), dropped (its queue was full), discarded (queued when the hook changed or the agent stopped).", []string{"hook", "outcome"}},
	{"newbieha_hook_queue_length", "Events waiting for a transition hook.", []string{"hook"}},
	{"newbieha_healthy", "1 if this node's own service is healthy (always 0 on a witness).", nil},
	{"newbieha_health_check_state", "1 for the check's state (passing, failing, unknown), 0 for the others.", []string{"check", "required", "state"}},
	{"newbieha_health_check_consecutive_failures", "Consecutive failed samples of the check.", []string{"check"}},
	{"newbieha_health_check_last_run_timestamp_seconds", "When the check's last sample finished (Unix time).", []string{"check"}},
	{"newbieha_health_check_injected", "1 while a drill forces the check's samples.", []string{"check"}},
	{"newbieha_health_check_duration_seconds", "Time each sample of the check took to probe (injected samples are not counted), since the agent started.", []string{"check", "kind"}},
	{"newbieha_gpu_read_ok", "1 if the last GPU telemetry read succeeded (absent without a GPU check).", nil},
	{"newbieha_gpu_answering", "1 if every supported value of the GPU was read.", gpuLabels},
	{"newbieha_gpu_retired_pages", "Retired frame-buffer pages (both causes).", gpuLabels},
	// Names and units of NVIDIA's DCGM exporter (dcgm-exporter's
	// default-counters.csv; DCGM field identifiers), so its dashboards
	// and alerts work on these series.
	{"DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", gpuLabels},
	{"DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", gpuLabels},
	{"DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", gpuLabels},
	{"DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", gpuLabels},
	{"DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", gpuLabels},
	{"DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", gpuLabels},
	{"DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", gpuLabels},
	{"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.", gpuLabels},
	{"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", gpuLabels},
	{"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for correctable errors.", gpuLabels},
	{"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for uncorrectable errors.", gpuLabels},
	{"DCGM_FI_DEV_ROW_REMAP_PENDING", "1 if a row remap waits for a GPU reset.", gpuLabels},
	{"DCGM_FI_DEV_ROW_REMAP_FAILURE", "1 if a row remap failed.", gpuLabels},
	{"DCGM_FI_DEV_XID_ERRORS", "Value of the last critical Xid error within the GPU check's Xid window (0: none).", gpuLabels},
}

// dcgmCounters are the DCGM series that dcgm-exporter types as counters.
var dcgmCounters = map[string]bool{"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": true, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": true}

// gpuLabels are dcgm-exporter's labels for a device.
var gpuLabels = []string{"gpu", "UUID", "device", "modelName"}

func newAgentCollector(a *Agent) *agentCollector {
	c := &agentCollector{a: a, descs: map[string]*prometheus.Desc{}}
	for _, s := range agentMetricSpecs {
		c.descs[s.name] = prometheus.NewDesc(s.name, s.help, s.labels, nil)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func b2f(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}
	emit := func(name string, v float64, labels ...string) {
		if dcgmCounters[name] {
			counter(name, v, labels...)
		} else {
			gauge(name, v, labels...)
		}
	}

	gauge("newbieha_build_info", 1, a.cfg.Version, a.cfg.Revision, runtime.Version())
	gauge("newbieha_info", 1, a.Name(), string(a.cfg.Node.Role))

	// Raft, from Stats() (strings; a value that does not parse is left out).
	stats := a.node.raft.Stats()
	state := a.node.raft.State()
	gauge("newbieha_raft_leader", b2f(state == raft.Leader))
	leaderAddr, _ := a.node.raft.LeaderWithID()
	gauge("newbieha_raft_has_leader", b2f(leaderAddr != ""))
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		gauge("newbieha_raft_state", b2f(s == state), s.String())
	}
	for name, key := range map[string]string{
		"newbieha_raft_term": "term", "newbieha_raft_last_log_index": "last_log_index",
		"newbieha_raft_commit_index": "commit_index", "newbieha_raft_applied_index": "applied_index",
		"newbieha_raft_last_snapshot_index": "last_snapshot_index", "newbieha_raft_fsm_pending": "fsm_pending",
		"newbieha_raft_peers": "num_peers",
	} {
		if v, err := strconv.ParseUint(stats[key], 10, 64); err == nil {
			gauge(name, float64(v))
		}
	}
	switch lc := stats["last_contact"]; {
	case state == raft.Leader:
		gauge("newbieha_raft_last_contact_seconds", 0)
	case lc == "0":
		gauge("newbieha_raft_last_contact_seconds", 0)
	default:
		if d, err := time.ParseDuration(lc); err == nil {
			gauge("newbieha_raft_last_contact_seconds", d.Seconds())
		}
	}

	// The applied state.
	st := a.node.fsm.State()
	gauge("newbieha_active", b2f(st.Active.Node == a.Name()))
	gauge("newbieha_epoch", float64(st.Active.Epoch))
	gauge("newbieha_members", float64(len(st.Members)))
	view := a.gossipView()
	for name, m := range st.Members {
		up := name == a.Name() || view[name].Alive
		gauge("newbieha_member_up", b2f(up), name, string(m.Role))
	}
	gauge("newbieha_maintenance", b2f(st.Maintenance))
	gauge("newbieha_blocked", b2f(a.ctl.blockedReason() != ""))
	counter("newbieha_transitions_total", float64(len(st.History)))
	failovers := a.ctl.failovers.count(st.History)
	for _, r := range knownReasons {
		if _, ok := failovers[r]; !ok {
			counter("newbieha_failovers_total", 0, r) // present from the start, so increase() sees the first
		}
	}
	for reason, n := range failovers {
		counter("newbieha_failovers_total", float64(n), reason)
	}

	// VIP and lease.
	settings := a.settings()
	_, hasVIP := settings.VIPPrefix()
	gauge("newbieha_vip_configured", b2f(hasVIP))
	gauge("newbieha_vip_held", b2f(a.lease.holdsVIP()))
	conflict, conflicts := a.ctl.conflictState()
	gauge("newbieha_vip_conflict", b2f(conflict != ""))
	counter("newbieha_vip_conflict_probes_total", float64(conflicts))
	ls := a.lease.state()
	gauge("newbieha_lease_epoch", float64(ls.Epoch))
	gauge("newbieha_lease_remaining_seconds", time.Duration(ls.Left).Seconds())
	gauge("newbieha_lease_duration_seconds", time.Duration(settings.Timings.LeaseDuration).Seconds())
	if ls.GrantTo != "" {
		gauge("newbieha_lease_grant_remaining_seconds", time.Duration(ls.GrantLeft).Seconds(), ls.GrantTo)
	}
	gauge("newbieha_lease_quarantine_seconds", time.Duration(ls.Quarantine).Seconds())
	snap := a.lease.stats.snapshot()
	counter("newbieha_lease_rounds_total", float64(snap.started))
	ch <- prometheus.MustNewConstHistogram(c.descs["newbieha_lease_round_duration_seconds"], snap.count, snap.sum, snap.buckets)
	if a.lease.gpu { // a holder: every voter from 0, so increase() sees the first refusal
		for _, v := range a.voterNames() {
			if _, ok := snap.refused[v]; !ok {
				counter("newbieha_lease_grants_refused_total", 0, v)
			}
		}
	}
	for voter, n := range snap.refused {
		counter("newbieha_lease_grants_refused_total", float64(n), voter)
	}

	// Hooks (cluster/hooks keeps the counts).
	if a.hooks != nil {
		for _, h := range a.hooks.mgr.Stats() {
			for _, r := range []string{"ok", "error", "timeout"} {
				counter("newbieha_hook_attempts_total", float64(h.Attempts[r]), h.Hook, h.Kind, r)
			}
			for outcome, n := range map[string]uint64{"delivered": h.Delivered, "failed": h.Failed, "dropped": h.Dropped, "discarded": h.Discarded} {
				counter("newbieha_hook_events_total", float64(n), h.Hook, outcome)
			}
			gauge("newbieha_hook_queue_length", float64(h.Queued), h.Hook)
		}
	}

	// Health.
	healthy, _, _ := a.ownHealth()
	gauge("newbieha_healthy", b2f(healthy))
	if a.cfg.Health != nil {
		histogram := func(name string, h checkLatency, labels ...string) {
			ch <- prometheus.MustNewConstHistogram(c.descs[name], h.Count, h.SumSeconds, h.buckets(), labels...)
		}
		c.collectHealth(a.cfg.Health.Detail(), emit, histogram)
	}
}

// healthDetail mirrors the part of the health report that metrics use, by
// its JSON field names: cluster reaches package health only through
// HealthReporter, whose Detail is {"report": health.Report, ...} in cmd.
type healthDetail struct {
	Report *struct {
		Checks []struct {
			Name            string    `json:"name"`
			Kind            string    `json:"kind"`
			Required        bool      `json:"required"`
			Status          string    `json:"status"`
			Output          string    `json:"output"`
			LastRun         time.Time `json:"last_run"`
			ConsecutiveFail int       `json:"consecutive_fail"`
			Injected        bool      `json:"injected"`
			// Latency is absent from an older health report.
			Latency *checkLatency `json:"latency"`
		} `json:"checks"`
		GPU      []gpuTelemetry `json:"gpu"`
		GPUError string         `json:"gpu_error"`
	} `json:"report"`
}

// checkLatency mirrors health.Histogram: the runner keeps the histogram
// (metrics are built per scrape, so the observations live with their
// owner) and the report carries a snapshot of it.
type checkLatency struct {
	Bounds     []float64 `json:"le"`     // upper bounds in seconds, ascending
	Counts     []uint64  `json:"counts"` // cumulative, per bound
	Count      uint64    `json:"count"`
	SumSeconds float64   `json:"sum_seconds"`
}

// valid reports whether h has one count per bound, cumulative and within
// Count, so that it makes a consistent Prometheus histogram.
func (h checkLatency) valid() bool {
	if len(h.Bounds) != len(h.Counts) {
		return false
	}
	for i := range h.Counts {
		if h.Counts[i] > h.Count || i > 0 && (h.Counts[i] < h.Counts[i-1] || h.Bounds[i] <= h.Bounds[i-1]) {
			return false
		}
	}
	return true
}

// buckets returns the cumulative counts by upper bound, as
// prometheus.MustNewConstHistogram takes them.
func (h checkLatency) buckets() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		out[b] = h.Counts[i]
	}
	return out
}

// gpuTelemetry mirrors gpu.Device.
type gpuTelemetry struct {
	Index                     int      `json:"index"`
	Name                      string   `json:"name"`
	UUID                      string   `json:"uuid"`
	MemoryTotalBytes          uint64   `json:"memory_total_bytes"`
	MemoryUsedBytes           uint64   `json:"memory_used_bytes"`
	MemoryFreeBytes           uint64   `json:"memory_free_bytes"`
	UtilizationGPU            uint32   `json:"utilization_gpu_pct"`
	UtilizationMemory         uint32   `json:"utilization_memory_pct"`
	TemperatureC              uint32   `json:"temperature_c"`
	PowerW                    float64  `json:"power_w"`
	ECCCorrected              uint64   `json:"ecc_corrected"`
	ECCUncorrected            uint64   `json:"ecc_uncorrected"`
	RetiredPages              int      `json:"retired_pages"`
	RemappedRowsCorrectable   int      `json:"remapped_rows_correctable"`
	RemappedRowsUncorrectable int      `json:"remapped_rows_uncorrectable"`
	RemapPending              bool     `json:"remap_pending"`
	RemapFailed               bool     `json:"remap_failed"`
	Unsupported               []string `json:"unsupported"`
	Errors                    []string `json:"errors"`
}

// xidProblem is how the GPU check names a critical Xid in its output
// (health.EvaluateGPU: "gpu%d critical Xid %d at RFC3339").
var xidProblem = regexp.MustCompile(`gpu(\d+) critical Xid (\d+) at (\S+)`)

const mib = 1 << 20

func (c *agentCollector) collectHealth(detail any, gauge func(string, float64, ...string), histogram func(string, checkLatency, ...string)) {
	raw, err := json.Marshal(detail)
	if err != nil {
		return
	}
	var d healthDetail
	if json.Unmarshal(raw, &d) != nil || d.Report == nil {
		return
	}
	xids := map[int]uint64{} // gpu index -> the latest critical Xid
	xidAt := map[int]time.Time{}
	hasGPUCheck := false
	for _, ch := range d.Report.Checks {
		id := ch.Kind + ":" + ch.Name
		for _, s := range []string{"passing", "failing", "unknown"} {
			gauge("newbieha_health_check_state", b2f(ch.Status == s), id, strconv.FormatBool(ch.Required), s)
		}
		gauge("newbieha_health_check_consecutive_failures", float64(ch.ConsecutiveFail), id)
		if !ch.LastRun.IsZero() {
			gauge("newbieha_health_check_last_run_timestamp_seconds", float64(ch.LastRun.UnixNano())/1e9, id)
		}
		gauge("newbieha_health_check_injected", b2f(ch.Injected), id)
		if ch.Latency != nil && ch.Latency.valid() {
			histogram("newbieha_health_check_duration_seconds", *ch.Latency, id, ch.Kind)
		}
		if ch.Kind != "gpu" {
			continue
		}
		hasGPUCheck = true
		for _, m := range xidProblem.FindAllStringSubmatch(ch.Output, -1) {
			i, _ := strconv.Atoi(m[1])
			x, _ := strconv.ParseUint(m[2], 10, 64)
			at, _ := time.Parse(time.RFC3339, strings.TrimRight(m[3], ";,"))
			if at.After(xidAt[i]) || xids[i] == 0 {
				xids[i], xidAt[i] = x, at
			}
		}
	}
	if !hasGPUCheck {
		return
	}
	gauge("newbieha_gpu_read_ok", b2f(d.Report.GPUError == ""))
	for _, dev := range d.Report.GPU {
		labels := []string{strconv.Itoa(dev.Index), dev.UUID, "nvidia" + strconv.Itoa(dev.Index), dev.Name}
		skip := map[string]bool{}
		for _, u := range dev.Unsupported {
			skip[u] = true
		}
		for _, e := range dev.Errors {
			f, _, _ := strings.Cut(e, ":")
			skip[f] = true
		}
		g := func(field, name string, v float64) {
			if !skip[field] {
				gauge(name, v, labels...)
			}
		}
		gauge("newbieha_gpu_answering", b2f(len(dev.Errors) == 0), labels...)
		g("utilization", "DCGM_FI_DEV_GPU_UTIL", float64(dev.UtilizationGPU))
		g("utilization", "DCGM_FI_DEV_MEM_COPY_UTIL", float64(dev.UtilizationMemory))
		g("memory", "DCGM_FI_DEV_FB_USED", float64(dev.MemoryUsedBytes/mib))
		g("memory", "DCGM_FI_DEV_FB_FREE", float64(dev.MemoryFreeBytes/mib))
		g("memory", "DCGM_FI_DEV_FB_TOTAL", float64(dev.MemoryTotalBytes/mib))
		g("temperature", "DCGM_FI_DEV_GPU_TEMP", float64(dev.TemperatureC))
		g("power", "DCGM_FI_DEV_POWER_USAGE", dev.PowerW)
		g("ecc_corrected", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", float64(dev.ECCCorrected))
		g("ecc_uncorrected", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", float64(dev.ECCUncorrected))
		g("retired_pages", "newbieha_gpu_retired_pages", float64(dev.RetiredPages))
		g("remapped_rows", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", float64(dev.RemappedRowsCorrectable))
		g("remapped_rows", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", float64(dev.RemappedRowsUncorrectable))
		g("remapped_rows", "DCGM_FI_DEV_ROW_REMAP_PENDING", b2f(dev.RemapPending))
		g("remapped_rows", "DCGM_FI_DEV_ROW_REMAP_FAILURE", b2f(dev.RemapFailed))
		gauge("DCGM_FI_DEV_XID_ERRORS", float64(xids[dev.Index]), labels...)
	}
}
