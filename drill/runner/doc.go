// Package runner runs a drill against a live cluster: the I/O half of
// runbook-driven drills, around the pure decisions of package drill.
//
// It declares what it needs as small interfaces, so that it is tested with
// fakes: a Cluster (status, history, the drill's own history records),
// Faults (inject one fault, with its undo), a Prober (one steady-state
// request through the VIP) and an ARPWatcher (who answers ARP for the
// VIP). cmd/newbieha builds the real ones on cluster.Client, net/http and
// vip.Probe.
//
// Prepare reads the cluster, resolves the plan and refuses, naming each
// reason, when a target cannot be resolved, a fault is not supported or a
// precondition fails; nothing has changed then. Run records the start in
// the history, runs the steps in order while the prober, the ARP watcher
// and a status poller run in their own goroutines, each owned by the run
// and stopped before Run returns. A fault runs in the background for its
// duration and is undone when it ends; an abort condition (drill.Plan's
// AbortReason), the caller's context (Ctrl-C) or the time limit undo every
// fault at once. Run then evaluates what was recorded and records the end
// and the verdict in the history.
//
// The probe runs where the runner runs: a runbook's "from: witness" means
// the operator runs the CLI on the witness (or on another host of the same
// segment off the GPU nodes).
package runner
