// Package lease holds the decisions of the holder lease as pure state
// machines: the voter that grants leases, the holder that asks for them and
// sets its fence deadline, and the controller's choice of who should be
// active. Nothing here does I/O, starts a goroutine or reads a clock: every
// input (a message, the applied replicated state, a clock reading) is an
// argument and every output (messages to send, a fence deadline, a move to
// commit) is a return value. cluster's runner does the network, Raft and the
// kernel; the simulation in this package's tests drives all three machines
// of a cluster under one seeded scheduler.
//
// The rule (docs/timings.md has the argument):
//
//   - A voter grants a lease of length L to X for epoch e only when its
//     applied state names X, a GPU node, active at e, and no grant it gave
//     another node may still be live. It measures the grant on its own
//     clock from the moment it receives the request, keeps it live for
//     L + max(ε, L/20) (the margin covers clock-rate drift), drops it when
//     X says it released (naming the round it was granted in),
//     and grants nothing for a quarantine after it starts.
//   - The holder reads its clock (t_s) before it sends a round, counts only
//     grants that echo the round's nonce and its epoch, and with a majority
//     of the voters sets its fence deadline to t_s + L, never later.
//
// Times are readings of a clock that never goes backwards and keeps
// counting while the machine is suspended (CLOCK_BOOTTIME), as a
// time.Duration since an arbitrary origin. Each node has its own clock;
// no two clocks are compared.
package lease
