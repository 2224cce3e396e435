package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/newbieha/newbieha/cluster/lease"
	"github.com/newbieha/newbieha/fsm"
	"github.com/newbieha/newbieha/health"
	"github.com/newbieha/newbieha/health/gpu"
)

// scrape is one parsed scrape.
type scrape map[string]*dto.MetricFamily

func parseScrape(t *testing.T, r io.Reader) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// value returns the value of the series of name whose labels include
// labels (name=value pairs); ok is false when there is none.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	mf := s[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func (s scrape) want(t *testing.T, where string, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := s.value(name, labels...)
	if !ok {
		t.Errorf("%s: no %s%v", where, name, labels)
	} else if got != want {
		t.Errorf("%s: %s%v = %v, want %v", where, name, labels, got, want)
	}
}

// scrapeHTTP scrapes url with client.
func scrapeHTTP(t *testing.T, client *http.Client, url string) scrape {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", url, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("scrape %s: Content-Type %q", url, ct)
	}
	return parseScrape(t, resp.Body)
}

// scrapeLocal scrapes a node through the operator route on its socket.
func (c *testCluster) scrapeLocal(name string) scrape {
	c.t.Helper()
	cl := c.client(name)
	return scrapeHTTP(c.t, cl.http, cl.base+"/v1/metrics")
}

func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMetrics_ScrapeReflectsTheState scrapes a three-node cluster on its
// plain metrics listener and on /v1/metrics, and checks the figures against
// the state: leader, Raft term and indexes, the holder's lease, and a
// manual failover counted with its reason.
func TestMetrics_ScrapeReflectsTheState(t *testing.T) {
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte(testVIPSettings)
	c.health["node1"], c.health["node2"] = &fakeHealth{}, &fakeHealth{}
	metricsAddr := freeAddr(t, "127.0.0.1")
	c.configure = func(name string, cfg *Config) {
		cfg.Version, cfg.Revision = "1.2.3-test", "abc123"
		if name == "node1" {
			cfg.Node.MetricsAddr = metricsAddr
		}
	}
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	ctx := context.Background()
	waitFor(t, 20*time.Second, "three voters", func() error {
		return healthyStatus(c.nodes["node1"].agent.Status(ctx), "node1", "node2", "witness")
	})
	c.waitHolder("node1")

	plain := &http.Client{Timeout: 5 * time.Second}
	s := scrapeHTTP(t, plain, "http://"+metricsAddr+"/metrics")
	where := "node1 /metrics"
	s.want(t, where, 1, "newbieha_build_info", "version", "1.2.3-test", "revision", "abc123")
	s.want(t, where, 1, "newbieha_info", "name", "node1", "role", "gpu")
	s.want(t, where, 1, "newbieha_active")
	s.want(t, where, 1, "newbieha_vip_configured")
	s.want(t, where, 1, "newbieha_vip_held")
	s.want(t, where, 0, "newbieha_vip_conflict")
	s.want(t, where, 1, "newbieha_lease_epoch")
	s.want(t, where, 3, "newbieha_members")
	for _, m := range []string{"node1", "node2", "witness"} {
		s.want(t, where, 1, "newbieha_member_up", "member", m)
	}
	s.want(t, where, 1, "newbieha_failovers_total", "reason", "startup")
	if v, _ := s.value("newbieha_lease_remaining_seconds"); v <= 0 || v > lease.MaxDuration.Seconds() {
		t.Errorf("lease remaining %v on the holder", v)
	}
	if v, _ := s.value("newbieha_lease_round_duration_seconds"); v < 1 {
		t.Errorf("lease round histogram has %v samples on the holder", v)
	}
	if v, _ := s.value("newbieha_lease_rounds_total"); v < 1 {
		t.Errorf("lease rounds %v on the holder", v)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds", "process_resident_memory_bytes"} {
		if s[name] == nil {
			t.Errorf("%s: no %s (Go and process collectors)", where, name)
		}
	}

	w := c.scrapeLocal("witness")
	where = "witness /v1/metrics"
	w.want(t, where, 0, "newbieha_active")
	w.want(t, where, 0, "newbieha_vip_held")
	w.want(t, where, 0, "newbieha_healthy")
	w.want(t, where, 1, "newbieha_info", "role", "witness")
	waitFor(t, 10*time.Second, "Raft figures that match raft.Stats()", func() error { return c.checkRaftMetrics() })
	// The witness joined last: its voter may still be in quarantine.
	waitFor(t, 10*time.Second, "the witness's grant to node1", func() error {
		if _, ok := c.scrapeLocal("witness").value("newbieha_lease_grant_remaining_seconds", "holder", "node1"); !ok {
			return fmt.Errorf("no live grant to node1")
		}
		return nil
	})

	if _, err := c.client("node1").Failover(ctx, FailoverRequest{To: "node2"}); err != nil {
		t.Fatalf("failover: %v", err)
	}
	c.waitHolder("node2")
	waitFor(t, 10*time.Second, "the witness to count the failover", func() error {
		w := c.scrapeLocal("witness")
		if v, _ := w.value("newbieha_failovers_total", "reason", "manual"); v != 1 {
			return fmt.Errorf("manual failovers %v", v)
		}
		if v, _ := w.value("newbieha_epoch"); v != 2 {
			return fmt.Errorf("epoch %v", v)
		}
		return nil
	})
	n2 := c.scrapeLocal("node2")
	n2.want(t, "node2 after failover", 1, "newbieha_active")
	n2.want(t, "node2 after failover", 1, "newbieha_failovers_total", "reason", "manual")
	n2.want(t, "node2 after failover", 1, "newbieha_failovers_total", "reason", "startup")
	n1 := scrapeHTTP(t, plain, "http://"+metricsAddr+"/metrics")
	n1.want(t, "node1 after failover", 0, "newbieha_active")
	n1.want(t, "node1 after failover", 0, "newbieha_lease_remaining_seconds")
}

// checkRaftMetrics compares each node's Raft series with its own
// raft.Stats() read around the scrape: one leader (last contact 0), the
// others followers that know it. The caller retries: an election on a
// loaded machine may move the leadership between two reads.
func (c *testCluster) checkRaftMetrics() error {
	leaders := 0
	for _, name := range []string{"node1", "node2", "witness"} {
		r := c.nodes[name].agent.node.raft
		before := r.Stats()
		s := c.scrapeLocal(name)
		after := r.Stats()
		if before["term"] != after["term"] || before["state"] != after["state"] {
			return fmt.Errorf("%s: term or state changed during the scrape", name)
		}
		var term float64
		fmt.Sscan(after["term"], &term)
		isLeader := after["state"] == raft.Leader.String()
		for _, w := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"newbieha_raft_leader", nil, b2f(isLeader)},
			{"newbieha_raft_has_leader", nil, 1},
			{"newbieha_raft_state", []string{"state", after["state"]}, 1},
			{"newbieha_raft_term", nil, term},
			{"newbieha_raft_peers", nil, 2},
		} {
			if got, ok := s.value(w.name, w.labels...); !ok || got != w.want {
				return fmt.Errorf("%s: %s%v = %v (present %v), want %v", name, w.name, w.labels, got, ok, w.want)
			}
		}
		for _, idx := range []string{"newbieha_raft_applied_index", "newbieha_raft_commit_index", "newbieha_raft_last_log_index"} {
			if v, _ := s.value(idx); v < 3 {
				return fmt.Errorf("%s: %s %v, want at least 3 (three members)", name, idx, v)
			}
		}
		contact, ok := s.value("newbieha_raft_last_contact_seconds")
		switch {
		case isLeader:
			leaders++
			if !ok || contact != 0 {
				return fmt.Errorf("%s leads: last contact %v (present %v)", name, contact, ok)
			}
		case !ok || contact > 5:
			return fmt.Errorf("%s follows: last contact %v (present %v)", name, contact, ok)
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d leaders", leaders)
	}
	return nil
}

func TestFailoverTally_CountsNewEntriesOnceByPrefix(t *testing.T) {
	var ft failoverTally
	h := []fsm.Transition{{Index: 3, Reason: "startup"}, {Index: 9, Reason: "manual:failover"}}
	if got := ft.count(h); got["startup"] != 1 || got["manual"] != 1 {
		t.Fatalf("first count %v", got)
	}
	h = append(h, fsm.Transition{Index: 12, Reason: "stop:node1"}, fsm.Transition{Index: 15, Reason: "Weird Reason"})
	if got := ft.count(h); got["startup"] != 1 || got["manual"] != 1 || got["stop"] != 1 || got["other"] != 1 {
		t.Fatalf("second count %v", got)
	}
	// The history keeps its last entries only: dropping old ones changes
	// nothing counted.
	if got := ft.count(h[2:]); got["startup"] != 1 || len(got) != 4 {
		t.Fatalf("after trimming %v", got)
	}
	// A restore to an older state starts the count again.
	if got := ft.count(h[:1]); got["startup"] != 1 || len(got) != 1 {
		t.Fatalf("after a restore %v", got)
	}
}

func TestLeaseStats_RoundLatencyAndRefusals(t *testing.T) {
	var s leaseStats
	req := lease.Output{Send: []lease.Envelope{{To: "a", Req: lease.Request{From: "n", Epoch: 1, Nonce: 1, Duration: time.Second}}}}
	s.tick(10*time.Millisecond, req)
	voters := []string{"a", "b", "c"}
	s.answered(11*time.Millisecond, lease.Answer{Voter: "b", Reason: "no"}, voters, lease.Output{})
	s.answered(11*time.Millisecond, lease.Answer{Voter: "mallory", Reason: "no"}, voters, lease.Output{})
	s.answered(12*time.Millisecond, lease.Answer{Voter: "a", Granted: true}, voters, lease.Output{Hold: true})
	// A later answer to the same round is not a second sample.
	s.answered(13*time.Millisecond, lease.Answer{Voter: "c", Granted: true}, voters, lease.Output{Hold: true})
	snap := s.snapshot()
	if snap.started != 1 || snap.count != 1 || snap.sum < 0.0019 || snap.sum > 0.0021 {
		t.Fatalf("snapshot %+v", snap)
	}
	if snap.buckets[0.001] != 0 || snap.buckets[0.0025] != 1 || snap.buckets[3] != 1 {
		t.Fatalf("buckets %v", snap.buckets)
	}
	if snap.refused["b"] != 1 || snap.refused["other"] != 1 || len(snap.refused) != 2 {
		t.Fatalf("refused %v", snap.refused)
	}
}

// fakeGPU is a health.GPUProbe with two H200s, GPU 1 having reported Xid 79.
type fakeGPU struct{}

func (fakeGPU) Devices(context.Context) ([]gpu.Device, error) {
	d := func(i int) gpu.Device {
		return gpu.Device{Index: i, Name: "NVIDIA H200", UUID: fmt.Sprintf("GPU-0000000%d", i), DriverVersion: "550.54.15",
			MemoryTotalBytes: 141 << 30, MemoryUsedBytes: 40 << 30, MemoryFreeBytes: 101 << 30,
			UtilizationGPU: 75, UtilizationMemory: 30, TemperatureC: uint32(50 + i), PowerW: 412.5, ECCCorrected: 3}
	}
	return []gpu.Device{d(0), d(1)}, nil
}

func (fakeGPU) XidEvents(since time.Time) ([]gpu.XidEvent, error) {
	return []gpu.XidEvent{{Time: time.Now(), Index: 1, UUID: "GPU-00000001", Xid: 79}}, nil
}

// runnerHealth is cmd's adapter in small: a health.Runner as
// HealthReporter, Detail shaped as cmd shapes it.
type runnerHealth struct{ r *health.Runner }

func (h runnerHealth) Healthy() (bool, string) { rep := h.r.Report(); return rep.Healthy, rep.Reason }
func (h runnerHealth) Pending() bool           { return false }
func (h runnerHealth) Detail() any             { return map[string]any{"report": h.r.Report()} }

// startRunner runs a health.Runner with a GPU check on probe and a
// failing exec check.
func startRunner(t *testing.T, probe health.GPUProbe) *health.Runner {
	t.Helper()
	cfg := health.Config{Checks: []health.CheckConfig{
		{Name: "gpu", Kind: health.KindGPU, Required: true, Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 1, Fall: 1, GPU: &health.GPUConfig{}},
		{Name: "false", Kind: health.KindExec, Required: true, Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 1, Fall: 1, Exec: &health.ExecConfig{Command: []string{"false"}}},
	}}
	r, err := health.New(cfg, health.Deps{GPU: probe})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); r.Close() })
	waitFor(t, 5*time.Second, "both checks to settle", func() error {
		for _, ch := range r.Report().Checks {
			if ch.Status == health.StatusUnknown {
				return fmt.Errorf("%s unknown", ch.ID())
			}
		}
		return nil
	})
	return r
}

// scrapeOneNode starts a one-node cluster with a fake VIP whose health is
// a real health.Runner on probe, and scrapes it.
func scrapeOneNode(t *testing.T, probe health.GPUProbe) scrape {
	t.Helper()
	return scrapeRunner(t, startRunner(t, probe))
}

// scrapeRunner starts a one-node cluster with a fake VIP whose health is
// r, and scrapes it.
func scrapeRunner(t *testing.T, r *health.Runner) scrape {
	t.Helper()
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte(testVIPSettings)
	c.configure = func(_ string, cfg *Config) { cfg.Health = runnerHealth{r} }
	c.init("node1", "127.0.0.1")
	return c.scrapeLocal("node1")
}

// TestMetrics_HealthChecksAndGPU feeds a real health.Runner with a fake GPU
// probe and checks the per-check and DCGM-named GPU series.
func TestMetrics_HealthChecksAndGPU(t *testing.T) {
	s := scrapeOneNode(t, fakeGPU{})
	where := "node1"
	s.want(t, where, 1, "newbieha_health_check_state", "check", "gpu:gpu", "state", "failing", "required", "true")
	s.want(t, where, 0, "newbieha_health_check_state", "check", "gpu:gpu", "state", "passing")
	s.want(t, where, 1, "newbieha_health_check_state", "check", "exec:false", "state", "failing")
	if v, _ := s.value("newbieha_health_check_consecutive_failures", "check", "exec:false"); v < 1 {
		t.Errorf("exec:false consecutive failures %v", v)
	}
	if v, _ := s.value("newbieha_health_check_last_run_timestamp_seconds", "check", "exec:false"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("exec:false last run %v", v)
	}
	s.want(t, where, 0, "newbieha_healthy")
	s.want(t, where, 1, "newbieha_gpu_read_ok")
	g1 := []string{"gpu", "1", "UUID", "GPU-00000001", "modelName", "NVIDIA H200", "device", "nvidia1"}
	s.want(t, where, 75, "DCGM_FI_DEV_GPU_UTIL", g1...)
	s.want(t, where, 30, "DCGM_FI_DEV_MEM_COPY_UTIL", g1...)
	s.want(t, where, 40*1024, "DCGM_FI_DEV_FB_USED", g1...)
	s.want(t, where, 101*1024, "DCGM_FI_DEV_FB_FREE", g1...)
	s.want(t, where, 141*1024, "DCGM_FI_DEV_FB_TOTAL", g1...)
	s.want(t, where, 51, "DCGM_FI_DEV_GPU_TEMP", g1...)
	s.want(t, where, 412.5, "DCGM_FI_DEV_POWER_USAGE", g1...)
	s.want(t, where, 3, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", g1...)
	s.want(t, where, 0, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", g1...)
	s.want(t, where, 79, "DCGM_FI_DEV_XID_ERRORS", g1...)
	s.want(t, where, 0, "DCGM_FI_DEV_XID_ERRORS", "gpu", "0")
	if mf := s["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"]; mf.GetType() != dto.MetricType_COUNTER {
		t.Errorf("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL is a %v, dcgm-exporter's is a counter", mf.GetType())
	}
	for _, c := range [][2]string{{"gpu:gpu", "gpu"}, {"exec:false", "exec"}} {
		if v, ok := s.value("newbieha_health_check_duration_seconds", "check", c[0], "kind", c[1]); !ok || v < 1 {
			t.Errorf("newbieha_health_check_duration_seconds{check=%q,kind=%q}: count %v, present %v", c[0], c[1], v, ok)
		}
	}
}

// histogram returns the one histogram of name whose labels include labels.
func (s scrape) histogram(t *testing.T, name string, labels ...string) *dto.Histogram {
	t.Helper()
	mf := s[name]
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s is a %v, not a histogram", name, mf.GetType())
	}
	var out *dto.Histogram
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool {
				return lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		if out != nil {
			t.Fatalf("more than one %s%v", name, labels)
		}
		out = m.GetHistogram()
	}
	if out == nil {
		t.Fatalf("no %s%v", name, labels)
	}
	return out
}

// TestMetrics_HealthCheckDuration checks the per-check latency histogram
// against the runner's own: a check that sleeps 20 ms, sampled once (its
// interval is an hour), scraped once.
func TestMetrics_HealthCheckDuration(t *testing.T) {
	cfg := health.Config{Checks: []health.CheckConfig{
		{Name: "slow", Kind: health.KindExec, Interval: time.Hour, Timeout: 5 * time.Second, Rise: 1, Fall: 1,
			Exec: &health.ExecConfig{Command: []string{"sleep", "0.02"}}},
	}}
	r, err := health.New(cfg, health.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	waitFor(t, 10*time.Second, "the first sample", func() error {
		if n := r.Latencies()["exec:slow"].Count; n != 1 {
			return fmt.Errorf("%d samples", n)
		}
		return nil
	})
	want := r.Latencies()["exec:slow"]

	s := scrapeRunner(t, r)
	h := s.histogram(t, "newbieha_health_check_duration_seconds", "check", "exec:slow", "kind", "exec")
	if h.GetSampleCount() != 1 || h.GetSampleSum() != want.SumSeconds || h.GetSampleSum() < 0.02 {
		t.Fatalf("count %d, sum %v; the runner has %d, %v", h.GetSampleCount(), h.GetSampleSum(), want.Count, want.SumSeconds)
	}
	bounds := append(health.LatencyBounds(), math.Inf(1)) // the text format has the +Inf bucket
	if len(h.GetBucket()) != len(bounds) {
		t.Fatalf("%d buckets, want %d", len(h.GetBucket()), len(bounds))
	}
	for i, b := range h.GetBucket() {
		wantCount := uint64(0)
		if b.GetUpperBound() >= h.GetSampleSum() {
			wantCount = 1
		}
		if b.GetUpperBound() != bounds[i] || b.GetCumulativeCount() != wantCount {
			t.Errorf("bucket le=%v holds %d, want le=%v holding %d (sample %vs)", b.GetUpperBound(), b.GetCumulativeCount(), bounds[i], wantCount, h.GetSampleSum())
		}
	}
}

const alertRulesFile = "../docs/examples/prometheus-alerts.yaml"

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// promqlWords are PromQL's keywords and aggregation operators.
var promqlWords = map[string]bool{"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "bool": true, "offset": true, "sum": true, "min": true, "max": true, "avg": true,
	"count": true, "stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
)

// metricNames returns the metric names an expression selects.
func metricNames(expr string) []string {
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, " ")
	e = promqlRanges.ReplaceAllString(e, " ")
	e = promqlGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promqlIdent.FindAllStringSubmatchIndex(e, -1) {
		word := strings.TrimRight(e[m[0]:m[1]], " \t\n(")
		if m[2] >= 0 || promqlWords[word] { // a function call or a keyword
			continue
		}
		if m[0] > 0 && (e[m[0]-1] >= '0' && e[m[0]-1] <= '9' || e[m[0]-1] == '.') {
			continue // the exponent or unit of a number (1e3, 5m)
		}
		if !slices.Contains(out, word) {
			out = append(out, word)
		}
	}
	return out
}

func TestMetricNames_OfPromQL(t *testing.T) {
	got := metricNames(`(max by (job) (a_b{x="y"}) == 1) and on (job) (sum by (job) (increase(c:d[5m])) == 0) or e > 0.5 * f_total unless rate(g[1m]) > 1e3`)
	want := []string{"a_b", "c:d", "e", "f_total", "g"}
	if !slices.Equal(got, want) {
		t.Fatalf("metricNames = %v, want %v", got, want)
	}
}

// TestMetrics_AlertRulesUseExportedMetrics checks that every metric the
// shipped alert rules use is exported by a scrape (of a GPU node with a
// GPU check; up is Prometheus's own).
func TestMetrics_AlertRulesUseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("parse %s: %v", alertRulesFile, err)
	}
	s := scrapeOneNode(t, fakeGPU{})
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			names := metricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s: no metric in %q", r.Alert, r.Expr)
			}
			for _, name := range names {
				n++
				if name != "up" && s[name] == nil {
					t.Errorf("alert %s uses %s, which a scrape does not export", r.Alert, name)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d metric uses found in %s", n, alertRulesFile)
	}
}

// TestMetrics_AlertRulesLoadInPromtool runs promtool check rules (Debian
// package prometheus) on the shipped rules.
func TestMetrics_AlertRulesLoadInPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): the alert rules are not checked by promtool")
	}
	out, err := exec.Command(promtool, "check", "rules", alertRulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// exported reports whether a scrape has the series name selects (a
// histogram's _bucket, _sum and _count included).
func (s scrape) exported(name string) bool {
	if s[name] != nil {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && s[base].GetType() == dto.MetricType_HISTOGRAM {
			return true
		}
	}
	return false
}

// TestMetrics_DashboardUsesExportedMetrics checks the shipped Grafana
// dashboard's queries the same way.
func TestMetrics_DashboardUsesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../docs/examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("parse the dashboard: %v", err)
	}
	s := scrapeOneNode(t, fakeGPU{})
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range metricNames(tg.Expr) {
				n++
				if !s.exported(name) {
					t.Errorf("panel %q uses %s, which a scrape does not export", p.Title, name)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d metric uses found in the dashboard", n)
	}
}
