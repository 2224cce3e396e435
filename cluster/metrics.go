package cluster

import (
	"fmt"
	"io"
	"net/http"
)

// handleMetrics writes this agent's metrics in the Prometheus text format
// (version 0.0.4). Served on Config.Node.MetricsAddr (plain HTTP, off by
// default) and at /v1/metrics on the API.
func (a *Agent) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	a.writeMetrics(w)
}

func (a *Agent) writeMetrics(w io.Writer) {
	st := a.node.fsm.State()
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	gauge := func(name, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %v\n", name, help, name, name, v)
	}
	counter := func(name, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %v\n", name, help, name, name, v)
	}
	healthy, _, _ := a.ownHealth()
	conflict, conflicts := a.ctl.conflictState()
	gauge("newbieha_raft_leader", "1 if this node is the Raft leader.", b(a.IsLeader()))
	gauge("newbieha_active", "1 if the replicated state names this node active.", b(st.Active.Node == a.Name()))
	gauge("newbieha_epoch", "Epoch of the current active assignment.", st.Active.Epoch)
	gauge("newbieha_vip_held", "1 if the VIP is on this host.", b(a.lease.holdsVIP()))
	gauge("newbieha_vip_conflict", "1 if the last ARP probe found another host answering for the VIP.", b(conflict != ""))
	counter("newbieha_vip_conflict_probes_total", "ARP probes that found a VIP conflict.", conflicts)
	gauge("newbieha_healthy", "1 if this node's own service is healthy (always 0 on a witness).", b(healthy))
	gauge("newbieha_maintenance", "1 if maintenance mode is on.", b(st.Maintenance))
	gauge("newbieha_members", "Members in the replicated state.", len(st.Members))
	counter("newbieha_transitions_total", "Changes of the active node kept in history.", len(st.History))
	gauge("newbieha_blocked", "1 if the leader leaves an unhealthy or lost active node in place.", b(a.ctl.blockedReason() != ""))
	// Names are [a-z0-9-] and roles are fixed words, so %q quoting is
	// valid label syntax.
	fmt.Fprintf(w, "# HELP newbieha_info Static information about this node.\n# TYPE newbieha_info gauge\nnewbieha_info{name=%q,role=%q} 1\n", a.Name(), string(a.cfg.Node.Role))
}
