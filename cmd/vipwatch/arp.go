package main

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/newbieha/newbieha/vip"
)

// ARPReport is what the ARP side of a run saw: every MAC that answered an
// ARP probe for the VIP, and the most that answered one probe.
type ARPReport struct {
	Probes int `json:"probes"`
	// MaxMACs is the largest number of distinct MACs that answered a
	// single probe: more than 1 means two hosts held the VIP at once.
	MaxMACs int `json:"max_macs"`
	// Conflicts lists the probes where more than one MAC answered.
	Conflicts []string `json:"conflicts,omitempty"`
	// MACs maps each MAC to when it first and last answered.
	MACs map[string][2]time.Time `json:"macs"`
}

func (r ARPReport) summary() string {
	var macs []string
	for m, t := range r.MACs {
		macs = append(macs, fmt.Sprintf("%s (%s-%s)", m, t[0].Format("15:04:05.000"), t[1].Format("15:04:05.000")))
	}
	sort.Strings(macs)
	return fmt.Sprintf("arp: probes=%d max_macs_in_one_probe=%d macs=[%s]", r.Probes, r.MaxMACs, strings.Join(macs, ", "))
}

// watchARP probes for ip on iface every interval until ctx ends.
func watchARP(ctx context.Context, iface string, ip netip.Addr, interval time.Duration, out *ARPReport, mu *sync.Mutex) {
	out.MACs = map[string][2]time.Time{}
	for ctx.Err() == nil {
		at := time.Now()
		macs, err := vip.Probe(ctx, iface, ip, interval)
		if ctx.Err() != nil {
			return
		}
		mu.Lock()
		out.Probes++
		if err == nil {
			if len(macs) > out.MaxMACs {
				out.MaxMACs = len(macs)
			}
			var names []string
			for _, m := range macs {
				k := m.String()
				names = append(names, k)
				t, ok := out.MACs[k]
				if !ok {
					t[0] = at
				}
				t[1] = at
				out.MACs[k] = t
			}
			if len(macs) > 1 {
				out.Conflicts = append(out.Conflicts, at.Format("15:04:05.000")+" "+strings.Join(names, ","))
			}
		}
		mu.Unlock()
	}
}
