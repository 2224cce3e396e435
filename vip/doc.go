// Package vip puts newbieha's virtual IP on an interface under a
// kernel-enforced lease, announces it, takes it away, and checks that no
// other host claims it.
//
// # Lease
//
// Manager.Claim and Manager.Renew write the address through netlink
// (RTM_NEWADDR with NLM_F_REPLACE, so the write is idempotent) with
// valid_lft = preferred_lft = Config.Lifetime, rounded up to whole seconds.
// The kernel deletes the address by itself once that time passes without a
// renewal, so an agent that crashes, hangs, is paused or loses quorum loses
// the VIP without running any code. Both take notAfter, the last instant at
// which the caller's quorum confirmation still covers it: they refuse after
// it, and remove the address again if it passed during the write.
//
// # Announcements
//
// The kernel sends nothing when an address is added. A claim sends a burst
// of Config.GARPRepeat announcements, Config.GARPInterval apart; an IPv4
// announcement is a gratuitous ARP in both forms, a broadcast request
// (sender IP = target IP = VIP, target MAC zero) and a broadcast reply
// (target MAC = sender MAC), because receivers differ in which form they
// accept; an IPv6 announcement is an unsolicited neighbour advertisement
// with the Override flag. Config.Refresh repeats one announcement
// periodically. Every announcement is sent only after checking that the
// kernel still holds the address, so none outlives the lease.
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
// namespace it was created in. Raw sockets need CAP_NET_RAW and address
// changes CAP_NET_ADMIN.
//
// docs/vip.md explains the timings, the choices and their sources.
package vip
