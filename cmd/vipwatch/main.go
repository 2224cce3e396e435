// Command vipwatch is the client side of demos, drills and failover
// benchmarks: it sends a request through the VIP every --interval, notes
// which node answered (the X-Served-By header of the stub model server)
// and reports each switch and the outage around it.
//
//	vipwatch --url http://10.0.0.100:8080/health --duration 20s --json out.json
//
// It stops after --duration, on SIGINT/SIGTERM, or (with --until NODE) once
// NODE has answered --settle times in a row.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to request (through the VIP)")
	interval := flag.Duration("interval", 20*time.Millisecond, "time between requests")
	timeout := flag.Duration("timeout", 200*time.Millisecond, "per-request timeout")
	duration := flag.Duration("duration", 30*time.Second, "stop after this long")
	until := flag.String("until", "", "stop once this node has answered --settle times in a row after another node (or nobody) answered")
	settle := flag.Int("settle", 10, "consecutive answers from --until that end the run")
	jsonOut := flag.String("json", "", "also write the report as JSON to this file")
	quiet := flag.Bool("quiet", false, "print only the summary")
	recordFailures := flag.Bool("record-failures", false, "list when each failed request started in the JSON report (failed_at), for attributing them to faults")
	arpIface := flag.String("arp-iface", "", "also probe by ARP, on this interface, who answers for --arp-ip")
	arpIP := flag.String("arp-ip", "", "the VIP to probe for by ARP")
	arpInterval := flag.Duration("arp-interval", 50*time.Millisecond, "time between ARP probes (each waits this long for answers)")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "vipwatch: --url is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	var arpRep ARPReport
	var arpMu sync.Mutex
	var arpWG sync.WaitGroup
	arpCtx, arpStop := context.WithCancel(ctx)
	if *arpIface != "" {
		ip, err := netip.ParseAddr(*arpIP)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vipwatch: --arp-ip:", err)
			os.Exit(2)
		}
		arpWG.Add(1)
		go func() {
			defer arpWG.Done()
			watchARP(arpCtx, *arpIface, ip, *arpInterval, &arpRep, &arpMu)
		}()
	}
	w := &watcher{client: &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}, url: *url}
	w.recordFailures = *recordFailures
	rep := w.run(ctx, *interval, *until, *settle, *quiet)
	arpStop()
	arpWG.Wait()
	if *arpIface != "" {
		rep.ARP = &arpRep
	}
	fmt.Println(rep.summary())
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "vipwatch:", err)
			os.Exit(1)
		}
	}
}

type watcher struct {
	client         *http.Client
	url            string
	recordFailures bool
}

// Sample is one request's outcome.
type Sample struct {
	At     time.Time `json:"at"`
	Node   string    `json:"node"` // "" when the request failed
	Status int       `json:"status"`
	Err    string    `json:"err,omitempty"`
}

// Switch is a change of the answering node.
type Switch struct {
	From string `json:"from"`
	To   string `json:"to"`
	// OutageMs runs from the last good answer of From to the first of To.
	OutageMs float64   `json:"outage_ms"`
	Failed   int       `json:"failed"` // failed requests in between
	At       time.Time `json:"at"`
}

// Report is what a run saw.
type Report struct {
	Requests int            `json:"requests"`
	Failed   int            `json:"failed"`
	ByNode   map[string]int `json:"by_node"`
	Switches []Switch       `json:"switches"`
	// MaxGapMs is the longest time without a good answer.
	MaxGapMs float64 `json:"max_gap_ms"`
	// FailedAt is when each failed request started (--record-failures).
	FailedAt []time.Time `json:"failed_at,omitempty"`
	First    string      `json:"first"`
	Last     string      `json:"last"`
	// ARP is set when ARP probing was asked for.
	ARP *ARPReport `json:"arp,omitempty"`
}

func (r Report) summary() string {
	s := fmt.Sprintf("requests=%d failed=%d by_node=%v max_gap_ms=%.0f", r.Requests, r.Failed, r.ByNode, r.MaxGapMs)
	for _, sw := range r.Switches {
		s += fmt.Sprintf("\nswitch %s -> %s: outage %.0f ms, %d failed requests", dash(sw.From), sw.To, sw.OutageMs, sw.Failed)
	}
	if r.ARP != nil {
		s += "\n" + r.ARP.summary()
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (w *watcher) once(ctx context.Context) Sample {
	s := Sample{At: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	resp, err := w.client.Do(req)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	resp.Body.Close()
	s.Status = resp.StatusCode
	if resp.StatusCode/100 == 2 {
		s.Node = resp.Header.Get("X-Served-By")
	} else {
		s.Err = resp.Status
	}
	return s
}

func (w *watcher) run(ctx context.Context, interval time.Duration, until string, settle int, quiet bool) Report {
	rep := Report{ByNode: map[string]int{}}
	var lastGood time.Time
	lastNode := ""
	failedSince := 0
	streak := 0
	sawOther := false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s := w.once(ctx)
		if ctx.Err() != nil {
			return rep
		}
		rep.Requests++
		if s.Node == "" {
			rep.Failed++
			failedSince++
			if w.recordFailures {
				rep.FailedAt = append(rep.FailedAt, s.At)
			}
			if !quiet {
				fmt.Printf("%s  -      %s\n", s.At.Format("15:04:05.000"), s.Err)
			}
		} else {
			rep.ByNode[s.Node]++
			if rep.First == "" {
				rep.First = s.Node
				// Printed even with --quiet: callers wait for it before
				// they cause a fault.
				fmt.Printf("first answer from %s\n", s.Node)
			}
			if !lastGood.IsZero() {
				if gap := ms(s.At.Sub(lastGood)); gap > rep.MaxGapMs && failedSince > 0 {
					rep.MaxGapMs = gap
				}
			}
			if s.Node != lastNode && lastNode != "" {
				sw := Switch{From: lastNode, To: s.Node, OutageMs: ms(s.At.Sub(lastGood)), Failed: failedSince, At: s.At}
				rep.Switches = append(rep.Switches, sw)
				if !quiet {
					fmt.Printf("%s  switch %s -> %s after %.0f ms (%d failed)\n", s.At.Format("15:04:05.000"), sw.From, sw.To, sw.OutageMs, sw.Failed)
				}
			} else if failedSince > 0 && lastNode != "" && !quiet {
				fmt.Printf("%s  %s back after %.0f ms (%d failed)\n", s.At.Format("15:04:05.000"), s.Node, ms(s.At.Sub(lastGood)), failedSince)
			}
			if s.Node == until {
				streak++
			} else {
				streak = 0
				sawOther = true
			}
			lastGood, lastNode, failedSince = s.At, s.Node, 0
			rep.Last = s.Node
			if until != "" && sawOther && streak >= settle {
				return rep
			}
		}
		select {
		case <-ctx.Done():
			return rep
		case <-t.C:
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
