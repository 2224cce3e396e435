// Package cluster runs one newbieha agent: Raft (raft-boltdb log and
// stable store, file snapshots, a mutual-TLS transport), membership (init,
// join, remove) and the agent API (remote over mutual TLS, local over a
// unix socket in the data dir).
//
// It imports fsm for the replicated state and reaches health, vip and
// runtime only through small interfaces it declares itself, so it compiles
// and tests without Docker, netlink or NVML. See docs/architecture.md and
// docs/cluster.md.
package cluster
