// Package hooks runs the operator's transition hooks: an exec hook (a
// command run with the event in its environment and, as JSON, on its
// standard input) or a webhook (an HTTP POST of the event as JSON, signed
// with HMAC-SHA256 under a secret read from a file), for events such as
// "this node became holder" or "a failover was committed".
//
// It has one job: deliver events off the critical path. Emit never blocks
// and never fails: each hook has a bounded queue and one goroutine of its
// own; a full queue drops the event and counts it. A hook's attempts run
// one at a time, in the order the events were emitted on this node, each
// bounded by the hook's timeout (an exec hook past it is killed with its
// whole process group), and a failed attempt is tried again after a
// doubling backoff, up to the hook's retries. Every event carries an id,
// the same in every attempt, and the epoch, so a receiver can drop
// duplicates: delivery is at least once while the agent runs.
//
// Nothing here knows the cluster: package cluster decides when an event
// happens and what it says, builds Hooks from the replicated settings and
// reads Stats for its metrics. docs/hooks.md is the operator's view.
package hooks
