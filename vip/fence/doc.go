// Package fence is the kernel half of newbieha's one rule: an eBPF
// classifier on the VIP's interface that drops the VIP's traffic once
// CLOCK_BOOTTIME reaches an absolute deadline held in a BPF map.
//
// # Why a deadline in the kernel
//
// The holder of the VIP may answer for it only until its lease, granted by
// a majority of voters, runs out: t_s + L, where t_s is read before the
// lease round starts. Everything a user-space process does to stop in
// time (a timer, removing the address, a kernel address lifetime) needs
// that process to run, or counts from when the kernel handled the write, so
// a process paused at the wrong moment outlives its lease. The fence does
// not: the holder writes the absolute instant t_s + L into the map, and
// the kernel compares every VIP packet against it. A crashed, hung,
// SIGSTOPped or partitioned agent stops answering for the VIP at the
// deadline without running any code, and a write that arrives late still
// carries the old absolute value, so it cannot extend the lease.
//
// # The program
//
// Two small programs (ingress and egress) are built with cilium/ebpf's asm
// package, no clang, with the VIP compiled in as immediates:
//
//   - egress: ARP packets whose sender protocol address is the VIP (replies
//     and gratuitous ARP), IPv4 packets whose source is the VIP; for an IPv6
//     VIP, IPv6 packets whose source is the VIP and neighbour
//     advertisements whose target is the VIP, whatever their source;
//   - ingress: IPv4 (IPv6) packets whose destination is the VIP.
//
// For those packets the program looks up key 0 of a one-entry array map
// (u64, nanoseconds on CLOCK_BOOTTIME), calls bpf_ktime_get_boot_ns and
// returns TC_ACT_SHOT when now >= deadline. A missing value and a zero
// deadline (a fresh map) drop: fail closed. Every other packet gets
// TC_ACT_UNSPEC, which passes it on to the next filter (and through, if
// there is none): the fence runs at priority 1 and must not short-cut
// other people's filters the way TC_ACT_OK would. Packet reads use direct
// packet access with a bounds check against data_end before each one.
// Frames are VLAN-less Ethernet; put the fence on the interface that
// carries the VIP (a VLAN sub-interface sees its frames untagged). The
// map is created with BPF_F_RDONLY_PROG: programs can only read it.
//
// Packet sockets see ingress frames before tc, so a conflict watcher on the
// same host still sees everything; egress drops happen before the packet
// taps and the driver, so nothing leaves.
//
// # Attachment
//
// The programs are attached with netlink as cls_bpf filters in
// direct-action mode on the ingress and egress hooks of a clsact qdisc
// (created if missing), at Priority 1, with a handle from HandleBase+1
// ("NB..") and the name FilterName(dir, vip), e.g.
// "newbieha-fence-v1:10.0.0.50#3f2a9c1e", whose last part is a digest of
// the program. Attaching through tc rather than tcx links keeps the
// kernel requirement at 5.8 (bpf_ktime_get_boot_ns); Ubuntu 22.04's 5.15
// qualifies. The filters hold the programs, the programs hold the map:
// the fence stays in force after the installing process exits.
//
// # Finding a fence again
//
// Install is idempotent and finds an existing fence through the kernel
// only: tc filters with our name for the VIP, their program IDs, the
// programs' map IDs, ebpf.NewMapFromID. It does not depend on bpffs,
// because `ip netns exec` and systemd's PrivateMounts give each process
// its own mount namespace and /sys/fs/bpf. An existing fence keeps its
// map, and so its deadline; a missing direction or an older program is
// replaced around the same map. Pinning under Config.PinDir is optional
// and only for operators (bpftool map dump pinned ...).
//
// # Reading back
//
// Install returns only after reading everything back: both filters there,
// in direct-action mode, their programs reading the fence's map, the map
// readable. Verify repeats the check cheaply (two netlink dumps; program
// IDs already checked are not reopened), and the VIP manager runs it
// before every renewal, so a filter deleted by hand or an interface
// recreated is noticed and repaired, or the claim fails closed.
//
// # Privileges and platforms
//
// bpf_ktime_get_boot_ns ignores time namespaces, so Install refuses to run
// in one whose CLOCK_BOOTTIME is offset from the host's (the deadlines
// would be off by the offset).
//
// Linux only (other systems get ErrNotSupported). Needs root, or CAP_BPF,
// CAP_NET_ADMIN and CAP_SYS_ADMIN (the last to open programs and maps by
// ID). Everything acts in the network namespace of the calling OS thread
// at Install or Open time; a Fence keeps using that namespace.
package fence
