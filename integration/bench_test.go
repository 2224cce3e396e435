//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFailover measures what a client sees through the VIP (a request
// every 20 ms, 50 ms timeout), one
// failover per iteration, alternating between the GPU nodes: run it with
// `make bench-failover` (-benchtime=5x or more). Reported per kind:
// min, median and max milliseconds from the fault to the first answer from
// the new node, and for planned switchovers the client's gap without a
// good answer.
func BenchmarkFailover(b *testing.B) {
	for _, kind := range []string{"crash", "host-loss", "planned", "leader-transfer", "service-errors"} {
		b.Run(kind, func(b *testing.B) {
			// Default timings and checks; a short hold-down so that runs
			// can alternate between the nodes without waiting 30 s.
			f := newFailoverLabWith(b, "", "failover:\n  hold_down: 1s\n")
			var toFirst, gaps []float64
			failed := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				from, to := f.n1, f.n2
				if !f.holds(f.n1) {
					from, to = f.n2, f.n1
				}
				if kind == "leader-transfer" {
					// Leadership moves between all three; the VIP must not.
					wait := f.watch("--timeout", "50ms", "--duration", "3s")
					s, err := f.status(f.w)
					if err != nil {
						b.Fatal(err)
					}
					next := map[string]*host{"node1": f.n2, "node2": f.w, "witness": f.n1}[s.Leader]
					if next == nil {
						b.Fatalf("leader %q", s.Leader)
					}
					f.transferLeader(next)
					r := wait()
					checkOneMAC(b, r)
					if len(r.Switches) != 0 {
						b.Fatalf("run %d: a leader transfer moved the VIP: %+v", i, r.Switches)
					}
					failed += r.Failed
					continue
				}
				// A 50 ms client timeout: a request that went to the old
				// holder's MAC just before the switch would otherwise hold
				// the measurement up by the client's own 200 ms timeout.
				wait := f.watch("--until", to.name, "--duration", "60s", "--timeout", "50ms")
				fault := time.Now()
				switch kind {
				case "crash":
					f.kill(from, syscall.SIGKILL)
				case "host-loss":
					run(b, "ip", "-n", from.ns, "link", "set", from.hostIf, "down")
				case "planned":
					f.mustCLI(to, "failover", "--to", to.name, "--data-dir", to.dataDir)
				case "service-errors":
					f.fault(from, "error")
				}
				r := wait()
				if r.Last != to.name || len(r.Switches) == 0 {
					b.Fatalf("run %d: client ended on %q", i, r.Last)
				}
				checkOneMAC(b, r)
				sw := r.Switches[len(r.Switches)-1]
				toFirst = append(toFirst, float64(sw.At.Sub(fault).Microseconds())/1000)
				gaps = append(gaps, sw.OutageMs)
				failed += r.Failed
				// Bring the old node back and wait for a healthy cluster.
				switch kind {
				case "crash":
					f.startAgent(from)
				case "host-loss":
					run(b, "ip", "-n", from.ns, "link", "set", from.hostIf, "up")
				case "service-errors":
					f.fault(from, "none")
				}
				waitFor(b, 60*time.Second, "the cluster healthy again", func() error {
					s, err := f.status(f.w)
					if err != nil {
						return err
					}
					if err := healthy(s, "node1", "node2", "witness"); err != nil {
						return err
					}
					if err := settled(s); err != nil {
						return err
					}
					if !f.holds(to) || f.holds(from) {
						return fmt.Errorf("VIP not settled on %s", to.name)
					}
					return nil
				})
			}
			b.StopTimer()
			if len(toFirst) > 0 {
				report(b, "fault-to-new-ms", toFirst)
				report(b, "client-gap-ms", gaps)
			}
			b.ReportMetric(float64(failed)/float64(b.N), "failed-req/op")
			b.Logf("%s: %d failed requests over %d runs", kind, failed, b.N)
		})
	}
}

// BenchmarkIdleFootprint measures what each agent costs while nothing
// happens: CPU (user + system, % of one core) and resident memory, over
// FOOTPRINT (default 60s; docs/benchmarks.md uses 5m). One iteration is
// one window. The witness runs its static build (NEWBIEHA_WITNESS_BIN,
// bin/newbieha-witness), as it is deployed. Resident memory is split into
// anonymous pages (heap, stacks, runtime) and file pages (the mapped
// binary and libraries), from /proc/PID/status.
func BenchmarkIdleFootprint(b *testing.B) {
	window := time.Minute
	if v := os.Getenv("FOOTPRINT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("FOOTPRINT=%q: %v", v, err)
		}
		window = d
	}
	witness := os.Getenv("NEWBIEHA_WITNESS_BIN")
	if witness == "" {
		b.Fatal("NEWBIEHA_WITNESS_BIN is not set: run `make bench-footprint`")
	}
	f := newFailoverLabWith(b, "", "", func(f *failoverLab) {
		// The lab starts every agent from the cgo build; restart the
		// witness from its own.
		f.kill(f.w, syscall.SIGTERM)
		f.w.bin = witness
		f.startAgent(f.w)
	})
	time.Sleep(5 * time.Second) // start-up work done
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := map[string]procSample{}
		for _, h := range []*host{f.n1, f.n2, f.w} {
			before[h.name] = sampleProc(b, h.agent.Process.Pid)
		}
		time.Sleep(window)
		for _, h := range []*host{f.n1, f.n2, f.w} {
			after := sampleProc(b, h.agent.Process.Pid)
			pct := func(d time.Duration) float64 { return 100 * d.Seconds() / window.Seconds() }
			cpu := pct(after.cpu - before[h.name].cpu)
			b.ReportMetric(cpu, h.name+"-cpu-%")
			b.ReportMetric(float64(after.rss)/(1<<20), h.name+"-rss-MiB")
			b.Logf("%s over %v: cpu %.2f %% of a core (user %.2f, system %.2f), rss %.1f MiB (anon %.1f, file %.1f)", h.name, window, cpu,
				pct(after.user-before[h.name].user), pct(after.cpu-after.user-(before[h.name].cpu-before[h.name].user)),
				float64(after.rss)/(1<<20), float64(after.anon)/(1<<20), float64(after.file)/(1<<20))
		}
	}
	if !f.holds(f.n1) || f.holds(f.n2) {
		b.Fatal("the VIP moved while idle")
	}
}

// BenchmarkBusyCores keeps one core busy on each GPU node (a spinning
// process in its namespace) for BUSY (default 60s; docs/benchmarks.md uses
// 5m) while a client probes through the VIP: no move and no failed request
// is allowed.
func BenchmarkBusyCores(b *testing.B) {
	window := time.Minute
	if v := os.Getenv("BUSY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BUSY=%q: %v", v, err)
		}
		window = d
	}
	f := newFailoverLab(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var spin []*exec.Cmd
		for _, h := range []*host{f.n1, f.n2} {
			spin = append(spin, f.startProc(h, h.dataDir+".spin.log", "sh", "-c", "while :; do :; done"))
		}
		wait := f.watch("--duration", window.String())
		r := wait()
		for _, c := range spin {
			_ = c.Process.Kill()
		}
		checkOneMAC(b, r)
		if r.Failed != 0 || len(r.Switches) != 0 {
			b.Fatalf("with a busy core on each GPU node: %d failed of %d, switches %+v", r.Failed, r.Requests, r.Switches)
		}
		b.Logf("busy cores for %v: %d requests, none failed, no move", window, r.Requests)
	}
	if h := f.checkHistory(f.n1, f.n2, f.w); len(h) != 1 {
		b.Fatalf("busy cores moved the role: %+v", h)
	}
}

type procSample struct {
	cpu, user       time.Duration // user + system, user
	rss, anon, file int64
}

// sampleProc reads a process's CPU time and resident set from /proc.
func sampleProc(b *testing.B, pid int) procSample {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start after
	// the last ')'; utime and stime are fields 14 and 15 (1-based).
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	const clkTck = 100 // USER_HZ on Linux
	s := procSample{cpu: time.Duration(utime+stime) * time.Second / clkTck, user: time.Duration(utime) * time.Second / clkTck}
	for _, line := range strings.Split(string(status), "\n") {
		key, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		switch key {
		case "VmRSS":
			s.rss = kb << 10
		case "RssAnon":
			s.anon = kb << 10
		case "RssFile":
			s.file = kb << 10
		}
	}
	return s
}

func report(b *testing.B, name string, v []float64) {
	sort.Float64s(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	b.ReportMetric(v[0], name+"-min")
	b.ReportMetric(med, name+"-median")
	b.ReportMetric(v[len(v)-1], name+"-max")
	b.Logf("%s over %d runs: min %.0f, median %.0f, max %.0f (all: %v)", name, len(v), v[0], med, v[len(v)-1], v)
}
