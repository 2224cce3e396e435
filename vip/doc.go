// Package vip puts newbieha's virtual IP on an interface under a
// kernel-enforced lease, announces it, takes it away, and checks that no
// other host claims it.
//
// # Fence and lease
//
// Manager.Hold is how the holder keeps the VIP. It takes an absolute
// deadline on CLOCK_BOOTTIME (Now): the instant the holder read before its
// lease round, plus the lease length. Hold makes sure the kernel fence of
// package vip/fence is attached to the interface and reads it back (or
// fails closed, ErrFence, holding nothing), writes the deadline into it,
// refuses if the deadline has already passed (ErrStaleConfirmation), and
// only then adds or refreshes the address. From the deadline on, an eBPF
// classifier on the interface drops the VIP's ARP and IP traffic whatever
// this process does: a crash, a hang, a pause or a lost partition cannot
// keep the VIP answering, and a late write still carries its old absolute
// value. Release closes the fence (deadline 0) and then removes the
// address; Close, a clean stop, closes the fence, removes the address and
// then detaches the fence; Cleanup does the same for what an earlier agent
// left behind.
//
// The address itself is written through netlink (RTM_NEWADDR with
// NLM_F_REPLACE, so the write is idempotent) with valid_lft = preferred_lft
// = Config.Lifetime, rounded up to whole seconds, or the time left to the
// deadline if that is longer. The kernel deletes the address by itself once
// that time passes without another Hold: a backstop that cleans up after a
// crash. Hold is the same call for a claim and for every renewal; if the
// deadline passes while the address is being written, it removes the
// address again and returns ErrStaleConfirmation.
//
// # Announcements
//
// The kernel sends nothing when an address is added. A Hold that adds the
// address (a claim), and Announce, send a burst of Config.GARPRepeat
// announcements, Config.GARPInterval apart; an IPv4 announcement is a
// gratuitous ARP in both forms, a broadcast request (sender IP = target IP
// = VIP, target MAC zero) and a broadcast reply (target MAC = sender MAC),
// because receivers differ in which form they accept; an IPv6 announcement
// is an unsolicited neighbour advertisement with the Override flag.
// Config.Refresh repeats one announcement periodically. Every announcement
// is sent only after checking that the kernel still holds the address, and
// the fence drops any sent after the deadline, so none outlives the lease.
//
// # Conflict detection
//
// Probe sends an RFC 5227 ARP probe (sender IP 0.0.0.0) and collects every
// hardware address that claims the VIP; ConflictMonitor does so periodically
// and judges the answers; Watch reports every ARP packet or neighbour
// advertisement that claims the address.
//
// # Platforms and namespaces
//
// Everything except the pure validation and frame code is Linux only; on
// other systems the functions return ErrNotSupported. Operations act in the
// network namespace of the calling OS thread; a Manager keeps using the
// namespace it was created in. Raw sockets need CAP_NET_RAW, address
// changes CAP_NET_ADMIN, and the fence CAP_BPF and CAP_SYS_ADMIN too.
//
// docs/vip.md explains the timings, the choices and their sources.
package vip
