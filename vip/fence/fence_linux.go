//go:build linux

package fence

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds one netlink request; the kernel answers in
// microseconds, so hitting it means something is badly wrong.
const netlinkTimeout = 5 * time.Second

// bpffsRoot is where bpffs is conventionally mounted.
const bpffsRoot = "/sys/fs/bpf"

// Now returns CLOCK_BOOTTIME: the clock the classifier reads with
// bpf_ktime_get_boot_ns, and the one every deadline is on. It counts from
// boot, includes time spent suspended, and is never set.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// CLOCK_BOOTTIME exists since Linux 2.6.39 and clock_gettime
		// cannot fail for a valid clock and pointer.
		panic(fmt.Sprintf("clock_gettime(CLOCK_BOOTTIME): %v", err))
	}
	return time.Duration(ts.Nano())
}

// A Fence is one attached kernel fence: an eBPF classifier on the ingress
// and egress tc hooks of an interface that drops the VIP's traffic once
// CLOCK_BOOTTIME reaches the deadline in its map. The fence lives in the
// kernel, not in this value: it keeps working when the process that
// installed it exits or is killed, until Remove (or RemoveAll) detaches it.
// A Fence's methods are safe for concurrent use.
type Fence struct {
	cfg Config

	mu           sync.Mutex
	closed       bool
	nl           *netlink.Handle // in the namespace Install or Open ran in
	dmap         *ebpf.Map       // the deadline map
	mapID        ebpf.MapID
	handle       uint32                       // tc handle of our filters
	progs        map[Direction]ebpf.ProgramID // last verified programs
	createdQdisc bool                         // this Fence added the clsact qdisc
	pinned       string                       // path of the map's pin, if any
	names        map[Direction]string         // FilterName per direction, computed once
}

func newFence(cfg Config, h *netlink.Handle) *Fence {
	f := &Fence{cfg: cfg, nl: h, progs: map[Direction]ebpf.ProgramID{}, names: map[Direction]string{}}
	for _, dir := range directions {
		// FilterName hashes the program; Verify runs on every renewal.
		f.names[dir] = FilterName(dir, cfg.VIP)
	}
	return f
}

// filterName is FilterName(dir, f.cfg.VIP), computed when f was made.
func (f *Fence) filterName(dir Direction) string { return f.names[dir] }

// Install makes sure a fence for cfg.VIP is attached to cfg.Iface and
// returns it. It is idempotent: if a fence of ours for that address is
// already attached (found through the tc filters, their programs and the
// programs' maps, not through bpffs, so a fence installed from another
// mount namespace is found too), Install keeps its map and so its deadline,
// and replaces only what is missing or out of date (a direction without a
// filter, a program of another version). Otherwise it attaches a new fence
// whose deadline is 0: it drops the VIP's traffic until SetDeadline.
//
// Before returning, Install reads everything back (both filters present,
// direct-action, running programs that read the fence's map, the map
// readable), and returns an error that says what is wrong otherwise: kernel
// too old, missing privileges (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN to
// open existing programs by ID), priority 1 used by a filter of another
// kind, bpffs not mountable for PinDir.
//
// It acts in the network namespace of the calling OS thread, and the
// returned Fence stays in it. It needs root (or CAP_BPF, CAP_NET_ADMIN and
// CAP_SYS_ADMIN). On kernels before 5.11 it raises RLIMIT_MEMLOCK for the
// process (rlimit.RemoveMemlock).
func Install(cfg Config) (*Fence, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.normalized()
	if err := checkKernel(); err != nil {
		return nil, fmt.Errorf("install vip fence for %s on %s: %w", cfg.VIP, cfg.Iface, err)
	}
	h, err := newHandle()
	if err != nil {
		return nil, fmt.Errorf("install vip fence for %s on %s: %w", cfg.VIP, cfg.Iface, err)
	}
	f := newFence(cfg, h)
	if err := f.install(); err != nil {
		f.release()
		return nil, fmt.Errorf("install vip fence for %s on %s: %w", cfg.VIP, cfg.Iface, err)
	}
	return f, nil
}

// Open returns the fence for cfg.VIP already attached to cfg.Iface, without
// changing anything, or an error wrapping ErrNotInstalled if there is none.
// A fence with only one direction attached is returned too (Verify reports
// the missing one), so that its deadline can still be lowered. Open acts in
// the network namespace of the calling OS thread. PinDir is ignored.
func Open(cfg Config) (*Fence, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.normalized()
	cfg.PinDir = ""
	h, err := newHandle()
	if err != nil {
		return nil, fmt.Errorf("open vip fence for %s on %s: %w", cfg.VIP, cfg.Iface, err)
	}
	f := newFence(cfg, h)
	if err := f.open(); err != nil {
		f.release()
		return nil, fmt.Errorf("open vip fence for %s on %s: %w", cfg.VIP, cfg.Iface, err)
	}
	return f, nil
}

// timensOffsets is where Linux shows this process's time namespace offsets.
const timensOffsets = "/proc/self/timens_offsets"

// boottimeOffset returns the CLOCK_BOOTTIME offset of the time namespace
// described by the contents of /proc/self/timens_offsets ("boottime SECS
// NSECS" on one line).
func boottimeOffset(offsets string) (time.Duration, error) {
	for _, line := range strings.Split(offsets, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || (f[0] != "boottime" && f[0] != "7") { // 7 is CLOCK_BOOTTIME
			continue
		}
		secs, err1 := strconv.ParseInt(f[1], 10, 64)
		nsecs, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("parse %q", line)
		}
		return time.Duration(secs)*time.Second + time.Duration(nsecs), nil
	}
	return 0, nil
}

// checkKernel reports, in words, why this kernel or process cannot run the
// fence, or nil.
func checkKernel() error {
	// In a time namespace with a boot-time offset, clock_gettime disagrees
	// with bpf_ktime_get_boot_ns (which ignores time namespaces), and every
	// deadline would be off by the offset.
	if b, err := os.ReadFile(timensOffsets); err == nil {
		off, err := boottimeOffset(string(b))
		if err != nil {
			return fmt.Errorf("read %s: %w", timensOffsets, err)
		}
		if off != 0 {
			return fmt.Errorf("this process runs in a time namespace whose CLOCK_BOOTTIME is offset by %v; the kernel fence reads the host's clock, so deadlines would be off by that much: run the agent in the host's time namespace", off)
		}
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raise RLIMIT_MEMLOCK for bpf maps: %w", hint(err))
	}
	err := features.HaveProgramHelper(ebpf.SchedCLS, asm.FnKtimeGetBootNs)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("kernel %s too old: tc programs need bpf_ktime_get_boot_ns (Linux 5.8 or later): %w", kernelRelease(), err)
	default:
		return fmt.Errorf("probe the kernel for bpf_ktime_get_boot_ns: %w", hint(err))
	}
}

// hint adds what to check to a permission or support error from bpf(2) or
// netlink.
func hint(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN; check kernel.unprivileged_bpf_disabled and any LSM policy)", err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("%w (kernel %s lacks the feature)", err, kernelRelease())
	}
	return err
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown)"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// newHandle opens a netlink handle in the calling OS thread's network
// namespace; the handle stays there whichever goroutine uses it later.
func newHandle() (*netlink.Handle, error) {
	runtime.LockOSThread()
	ns, err := netns.Get()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("open this thread's network namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("set netlink timeout: %w", err)
	}
	return h, nil
}

// parent returns the tc parent of a direction's hook under clsact.
func parent(dir Direction) uint32 {
	if dir == Ingress {
		return netlink.HANDLE_MIN_INGRESS
	}
	return netlink.HANDLE_MIN_EGRESS
}

var directions = [...]Direction{Ingress, Egress}

// ourFilter is one filter of ours found on a hook.
type ourFilter struct {
	dir     Direction
	f       *netlink.BpfFilter
	vip     netip.Addr
	version string
}

// scan lists our filters on both hooks of l, and every handle in use at
// Priority on either hook.
func scan(h *netlink.Handle, l netlink.Link) ([]ourFilter, map[uint32]bool, error) {
	var ours []ourFilter
	used := map[uint32]bool{}
	for _, dir := range directions {
		list, err := h.FilterList(l, parent(dir))
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				continue // no clsact qdisc: no filters
			}
			return nil, nil, fmt.Errorf("list %s filters of %s: %w", dir, l.Attrs().Name, err)
		}
		for _, fl := range list {
			a := fl.Attrs()
			if a.Priority == Priority {
				used[a.Handle] = true
			}
			bf, ok := fl.(*netlink.BpfFilter)
			if !ok {
				continue
			}
			vip, version, mine := parseFilterName(bf.Name)
			if !mine {
				continue
			}
			ours = append(ours, ourFilter{dir: dir, f: bf, vip: vip, version: version})
		}
	}
	return ours, used, nil
}

// progMap returns the one map a program reads, by program ID.
func progMap(id ebpf.ProgramID) (ebpf.MapID, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return 0, fmt.Errorf("open program %d by id: %w", id, hint(err))
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return 0, fmt.Errorf("read info of program %d: %w", id, hint(err))
	}
	ids, ok := info.MapIDs()
	if !ok {
		return 0, fmt.Errorf("read map ids of program %d: not available (needs Linux 4.15 or later)", id)
	}
	if len(ids) != 1 {
		return 0, fmt.Errorf("program %d reads %d maps, want 1", id, len(ids))
	}
	return ids[0], nil
}

// openDeadlineMap opens a map by ID and checks it has our shape.
func openDeadlineMap(id ebpf.MapID) (*ebpf.Map, error) {
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open map %d by id: %w", id, hint(err))
	}
	if m.Type() != ebpf.Array || m.KeySize() != 4 || m.ValueSize() != 8 || m.MaxEntries() != 1 {
		m.Close()
		return nil, fmt.Errorf("map %d is a %v with key %d, value %d, %d entries; want a 1-entry array of u64", id, m.Type(), m.KeySize(), m.ValueSize(), m.MaxEntries())
	}
	return m, nil
}

// newDeadlineMap creates a deadline map holding 0. Programs may only read
// it (BPF_F_RDONLY_PROG).
func newDeadlineMap() (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       mapName,
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: 1,
		Flags:      unix.BPF_F_RDONLY_PROG,
	})
	if err != nil {
		return nil, fmt.Errorf("create deadline map: %w", hint(err))
	}
	return m, nil
}

func readDeadline(m *ebpf.Map) (time.Duration, error) {
	var v uint64
	if err := m.Lookup(uint32(0), &v); err != nil {
		return 0, fmt.Errorf("read deadline: %w", hint(err))
	}
	if v > uint64(1<<63-1) {
		return time.Duration(1<<63 - 1), nil
	}
	return time.Duration(v), nil
}

// programSpec returns the load spec of the classifier for dir and vip,
// without its map.
func programSpec(dir Direction, vip netip.Addr) (*ebpf.ProgramSpec, error) {
	insns, err := instructions(dir, vip)
	if err != nil {
		return nil, err
	}
	return &ebpf.ProgramSpec{
		Name:         progName(dir),
		Type:         ebpf.SchedCLS,
		Instructions: insns,
		// The program calls no GPL-only helper; the string only tells the
		// kernel so. It says nothing about newbieha's own licence.
		License: "Dual MIT/GPL",
	}, nil
}

// loadProgram loads the classifier for dir reading m.
func loadProgram(dir Direction, vip netip.Addr, m *ebpf.Map) (*ebpf.Program, error) {
	spec, err := programSpec(dir, vip)
	if err != nil {
		return nil, err
	}
	if err := spec.Instructions.AssociateMap(mapSymbol, m); err != nil {
		return nil, fmt.Errorf("associate deadline map: %w", err)
	}
	p, err := ebpf.NewProgram(spec)
	if err != nil {
		return nil, fmt.Errorf("load %s program: %w", dir, hint(err))
	}
	return p, nil
}

// install is Install's work; f.nl is set.
func (f *Fence) install() (err error) {
	l, err := f.nl.LinkByName(f.cfg.Iface)
	if err != nil {
		return fmt.Errorf("look up interface %s: %w", f.cfg.Iface, err)
	}
	ours, used, err := scan(f.nl, l)
	if err != nil {
		return err
	}
	// Our filters for this VIP, by handle; normally one handle, both hooks.
	byHandle := map[uint32][]ourFilter{}
	var handles []uint32
	for _, o := range ours {
		if o.vip != f.cfg.VIP {
			continue
		}
		if _, ok := byHandle[o.f.Handle]; !ok {
			handles = append(handles, o.f.Handle)
		}
		byHandle[o.f.Handle] = append(byHandle[o.f.Handle], o)
	}

	// Keep the earliest deadline among existing maps: if two maps somehow
	// guard the VIP, the earlier is the one a holder's lease still covers.
	var (
		best      *ebpf.Map
		bestDL    time.Duration
		keep      uint32
		mapErrors []error
	)
	for _, hd := range handles {
		for _, o := range byHandle[hd] {
			id, err := progMap(ebpf.ProgramID(o.f.Id))
			if err == nil {
				var m *ebpf.Map
				if m, err = openDeadlineMap(id); err == nil {
					var dl time.Duration
					if dl, err = readDeadline(m); err == nil {
						if best == nil || dl < bestDL {
							if best != nil {
								best.Close()
							}
							best, bestDL, keep = m, dl, hd
						} else {
							m.Close()
						}
						continue
					}
					m.Close()
				}
			}
			mapErrors = append(mapErrors, fmt.Errorf("%s filter %#x: %w", o.dir, hd, err))
		}
	}
	if best == nil && len(mapErrors) > 0 {
		// A fence of ours is there but its deadline cannot be read. Replacing
		// it with a fresh one (deadline 0) would be safe, but the same lack of
		// privileges would break that too: say so instead.
		return fmt.Errorf("a fence for %s is attached but its deadline map cannot be read: %w", f.cfg.VIP, errors.Join(mapErrors...))
	}
	if best == nil {
		if best, err = newDeadlineMap(); err != nil {
			return err
		}
		if keep, err = freeHandle(used); err != nil {
			return err
		}
	}
	f.dmap = best
	if f.mapID, err = mapIDOf(best); err != nil {
		return err
	}
	f.handle = keep

	if err := f.ensureClsact(l); err != nil {
		return err
	}
	fresh := len(handles) == 0
	var added []Direction
	defer func() {
		if err == nil || !fresh {
			return
		}
		// A fresh install failed half-way: take back what this call
		// attached, so a failed Install leaves the interface as it was.
		for _, dir := range added {
			_ = deleteFilter(f.nl, l, dir, f.handle)
		}
		if f.createdQdisc {
			_ = removeIdleClsact(f.nl, l)
		}
	}()
	for _, dir := range directions {
		var have *ourFilter
		for i, o := range byHandle[keep] {
			if o.dir == dir {
				have = &byHandle[keep][i]
			}
		}
		if have != nil && have.f.DirectAction && have.f.Name == f.filterName(dir) {
			id := ebpf.ProgramID(have.f.Id)
			if mid, err := progMap(id); err == nil && mid == f.mapID {
				continue // already exactly what we would attach
			}
		}
		if err := f.attach(l, dir, have != nil); err != nil {
			return err
		}
		added = append(added, dir)
	}
	// Other handles for the same VIP (a leftover of an interrupted install):
	// the kept fence covers the VIP now, so remove them.
	for _, hd := range handles {
		if hd == keep {
			continue
		}
		for _, o := range byHandle[hd] {
			if err := deleteFilter(f.nl, l, o.dir, hd); err != nil {
				return fmt.Errorf("remove duplicate fence filter %#x: %w", hd, err)
			}
		}
	}
	if err := f.verifyLocked(); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if f.cfg.PinDir != "" {
		if err := f.pin(); err != nil {
			return err
		}
	}
	return nil
}

// open is Open's work.
func (f *Fence) open() error {
	l, err := f.nl.LinkByName(f.cfg.Iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("interface %s not found: %w", f.cfg.Iface, ErrNotInstalled)
		}
		return fmt.Errorf("look up interface %s: %w", f.cfg.Iface, err)
	}
	ours, _, err := scan(f.nl, l)
	if err != nil {
		return err
	}
	var errs []error
	for _, o := range ours {
		if o.vip != f.cfg.VIP {
			continue
		}
		id, err := progMap(ebpf.ProgramID(o.f.Id))
		if err == nil {
			var m *ebpf.Map
			if m, err = openDeadlineMap(id); err == nil {
				f.dmap, f.mapID, f.handle = m, id, o.f.Handle
				return nil
			}
		}
		errs = append(errs, fmt.Errorf("%s filter %#x: %w", o.dir, o.f.Handle, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("a fence for %s is attached but its deadline map cannot be opened: %w", f.cfg.VIP, errors.Join(errs...))
	}
	return ErrNotInstalled
}

func mapIDOf(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, fmt.Errorf("read deadline map info: %w", hint(err))
	}
	id, ok := info.ID()
	if !ok {
		return 0, fmt.Errorf("read deadline map id: not available (needs Linux 4.13 or later)")
	}
	return id, nil
}

// ensureClsact adds a clsact qdisc to l unless it has one.
func (f *Fence) ensureClsact(l netlink.Link) error {
	qs, err := f.nl.QdiscList(l)
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", f.cfg.Iface, err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return nil
		}
		if q.Attrs().Parent == netlink.HANDLE_INGRESS {
			return fmt.Errorf("interface %s has an %s qdisc at the ingress hook; the fence needs clsact there (remove it, or replace it with clsact and its filters)", f.cfg.Iface, q.Type())
		}
	}
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	if err := f.nl.QdiscAdd(q); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil // added meanwhile
		}
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("add clsact qdisc to %s: %w (kernel %s lacks sch_ingress/clsact, CONFIG_NET_SCH_INGRESS)", f.cfg.Iface, err, kernelRelease())
		}
		return fmt.Errorf("add clsact qdisc to %s: %w", f.cfg.Iface, hint(err))
	}
	f.createdQdisc = true
	return nil
}

// attach loads the program for dir against f.dmap and puts it at f.handle,
// replacing the filter there if replace.
func (f *Fence) attach(l netlink.Link, dir Direction, replace bool) error {
	p, err := loadProgram(dir, f.cfg.VIP, f.dmap)
	if err != nil {
		return err
	}
	// The filter holds its own reference to the program; ours goes when
	// this returns.
	defer p.Close()
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: l.Attrs().Index,
			Parent:    parent(dir),
			Handle:    f.handle,
			Priority:  Priority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           p.FD(),
		Name:         f.filterName(dir),
		DirectAction: true,
	}
	if replace {
		err = f.nl.FilterReplace(filter)
	} else {
		err = f.nl.FilterAdd(filter)
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.EINVAL):
			return fmt.Errorf("attach %s filter to %s: %w (is priority %d on that hook used by a filter of another kind or protocol? `tc filter show dev %s %s`)", dir, f.cfg.Iface, err, Priority, f.cfg.Iface, dir)
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
			return fmt.Errorf("attach %s filter to %s: %w (kernel %s lacks cls_bpf, CONFIG_NET_CLS_BPF)", dir, f.cfg.Iface, err, kernelRelease())
		case errors.Is(err, unix.EEXIST):
			return fmt.Errorf("attach %s filter to %s: handle %#x taken meanwhile (another install running?): %w", dir, f.cfg.Iface, f.handle, err)
		}
		return fmt.Errorf("attach %s filter to %s: %w", dir, f.cfg.Iface, hint(err))
	}
	return nil
}

// deleteFilter removes our filter at handle on dir. A missing one is not an
// error. handle must not be 0: that would delete every filter at Priority.
func deleteFilter(h *netlink.Handle, l netlink.Link, dir Direction, handle uint32) error {
	if handle == 0 {
		return fmt.Errorf("refusing to delete filter handle 0 (it means all filters at priority %d)", Priority)
	}
	err := h.FilterDel(&netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: l.Attrs().Index,
		Parent:    parent(dir),
		Handle:    handle,
		Priority:  Priority,
		Protocol:  unix.ETH_P_ALL,
	}})
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete %s filter %#x on %s: %w", dir, handle, l.Attrs().Name, hint(err))
	}
	return nil
}

// pin pins the deadline map under PinDir, mounting a bpffs if needed, and
// replaces a stale pin of another map at the same path.
func (f *Fence) pin() error {
	if err := ensureBPFFS(f.cfg.PinDir); err != nil {
		return err
	}
	path := filepath.Join(f.cfg.PinDir, pinName(f.cfg.Iface, f.cfg.VIP))
	if old, err := ebpf.LoadPinnedMap(path, nil); err == nil {
		same := false
		if id, err := mapIDOf(old); err == nil && id == f.mapID {
			same = true
		}
		old.Close()
		if same {
			f.pinned = path
			return nil
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale pin %s: %w", path, err)
		}
	} else if _, statErr := os.Lstat(path); statErr == nil {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale pin %s: %w", path, err)
		}
	}
	if err := f.dmap.Pin(path); err != nil {
		return fmt.Errorf("pin deadline map at %s: %w", path, hint(err))
	}
	f.pinned = path
	return nil
}

// isBPFFS reports whether path is on a bpffs.
func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == uint32(unix.BPF_FS_MAGIC)
}

// ensureBPFFS makes dir a directory on a bpffs: as it is, by mounting one
// on /sys/fs/bpf when dir is below it, or else by mounting one on dir.
func ensureBPFFS(dir string) error {
	if isBPFFS(dir) {
		return nil
	}
	mountAt := dir
	if dir == bpffsRoot || strings.HasPrefix(dir, bpffsRoot+"/") {
		mountAt = bpffsRoot
	}
	if !isBPFFS(mountAt) {
		if err := os.MkdirAll(mountAt, 0o700); err != nil {
			return fmt.Errorf("bpffs for PinDir %s: create %s: %w", dir, mountAt, err)
		}
		if err := unix.Mount("bpf", mountAt, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("bpffs for PinDir %s: mount bpffs on %s: %w (needs CAP_SYS_ADMIN in the mount namespace, and a kernel with CONFIG_BPF_SYSCALL)", dir, mountAt, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bpffs for PinDir %s: %w", dir, err)
	}
	if !isBPFFS(dir) {
		return fmt.Errorf("PinDir %s is not on a bpffs after mounting one on %s", dir, mountAt)
	}
	return nil
}

// Config returns the fence's configuration.
func (f *Fence) Config() Config { return f.cfg }

// Handle returns the tc handle of the fence's filters.
func (f *Fence) Handle() uint32 { return f.handle }

// MapID returns the kernel ID of the deadline map (bpftool map show id N).
func (f *Fence) MapID() uint32 { return uint32(f.mapID) }

// SetDeadline writes the deadline, an instant on CLOCK_BOOTTIME (see Now),
// and reads it back. From that instant on, the kernel drops the VIP's
// traffic. The value is absolute: a write that comes late (a process paused
// between computing it and writing it) cannot extend the fence beyond the
// value written. 0 drops at once. A negative d is refused and nothing is
// written.
func (f *Fence) SetDeadline(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: deadline %v: negative", ErrInvalidConfig, d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if err := f.dmap.Update(uint32(0), uint64(d), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write fence deadline: %w", hint(err))
	}
	got, err := readDeadline(f.dmap)
	if err != nil {
		return err
	}
	if got != d {
		return fmt.Errorf("fence deadline reads back %v after writing %v", got, d)
	}
	return nil
}

// Deadline returns the deadline in the fence's map, on CLOCK_BOOTTIME.
func (f *Fence) Deadline() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, ErrClosed
	}
	return readDeadline(f.dmap)
}

// Verify checks that the fence is still in force: a filter of ours at the
// fence's handle on both hooks, in direct-action mode, whose programs read
// the fence's map, and the map readable. Something else (an operator's tc
// command, a recreated interface) can undo the fence; the holder calls
// Verify before every renewal. The error wraps ErrNotAttached and says what
// is missing.
func (f *Fence) Verify() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	return f.verifyLocked()
}

func (f *Fence) verifyLocked() error {
	l, err := f.nl.LinkByName(f.cfg.Iface)
	if err != nil {
		return fmt.Errorf("%w: look up interface %s: %w", ErrNotAttached, f.cfg.Iface, err)
	}
	ours, _, err := scan(f.nl, l)
	if err != nil {
		return err
	}
	for _, dir := range directions {
		name := f.filterName(dir)
		var found *netlink.BpfFilter
		for _, o := range ours {
			if o.dir == dir && o.f.Handle == f.handle && o.f.Priority == Priority && o.f.Name == name {
				found = o.f
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("%w: no %s filter %#x %q on %s", ErrNotAttached, dir, f.handle, name, f.cfg.Iface)
		case !found.DirectAction:
			return fmt.Errorf("%w: %s filter %#x on %s is not in direct-action mode", ErrNotAttached, dir, f.handle, f.cfg.Iface)
		}
		id := ebpf.ProgramID(found.Id)
		if f.progs[dir] == id {
			continue // checked before; program IDs are never reused while loaded
		}
		mid, err := progMap(id)
		if err != nil {
			return fmt.Errorf("%w: %s program %d: %w", ErrNotAttached, dir, id, err)
		}
		if mid != f.mapID {
			return fmt.Errorf("%w: %s program %d reads map %d, not the fence's map %d", ErrNotAttached, dir, id, mid, f.mapID)
		}
		f.progs[dir] = id
	}
	if _, err := readDeadline(f.dmap); err != nil {
		return err
	}
	return nil
}

// Remove sets the deadline to 0, detaches the fence's filters, removes the
// clsact qdisc if this Fence added it and nothing else is attached to it,
// unpins the map, and closes the Fence. Missing filters or interface are
// not an error. The caller removes the VIP first: once the fence is gone,
// nothing in the kernel stops the address from answering.
func (f *Fence) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	defer f.release()
	var errs []error
	if err := f.dmap.Update(uint32(0), uint64(0), ebpf.UpdateAny); err != nil {
		errs = append(errs, fmt.Errorf("zero the deadline: %w", err))
	}
	l, err := f.nl.LinkByName(f.cfg.Iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			errs = append(errs, fmt.Errorf("look up interface %s: %w", f.cfg.Iface, err))
		}
	} else {
		ours, _, err := scan(f.nl, l)
		if err != nil {
			errs = append(errs, err)
		}
		for _, o := range ours {
			if o.f.Handle == f.handle && o.vip == f.cfg.VIP {
				if err := deleteFilter(f.nl, l, o.dir, o.f.Handle); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if f.createdQdisc {
			if err := removeIdleClsact(f.nl, l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if f.pinned != "" {
		if err := os.Remove(f.pinned); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", f.pinned, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove vip fence for %s on %s: %w", f.cfg.VIP, f.cfg.Iface, err)
	}
	return nil
}

// removeIdleClsact deletes l's clsact qdisc if no filter is attached to it.
func removeIdleClsact(h *netlink.Handle, l netlink.Link) error {
	for _, dir := range directions {
		list, err := h.FilterList(l, parent(dir))
		if err != nil {
			return fmt.Errorf("list %s filters of %s: %w", dir, l.Attrs().Name, err)
		}
		if len(list) > 0 {
			return nil
		}
	}
	err := h.QdiscDel(&netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}})
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete clsact qdisc of %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// Close frees this process's handles on the fence and leaves the fence
// attached and in force, with its deadline: what a process that stops
// without giving the VIP up (or is killed) leaves behind. Close is
// idempotent; after it, every method returns ErrClosed.
func (f *Fence) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.release()
	return nil
}

// release closes the handles. Callers hold f.mu or own f exclusively.
func (f *Fence) release() {
	f.closed = true
	if f.dmap != nil {
		f.dmap.Close()
		f.dmap = nil
	}
	if f.nl != nil {
		f.nl.Close()
		f.nl = nil
	}
}

// List returns every fence of ours attached to iface, in the network
// namespace of the calling OS thread, with each one's deadline. A missing
// interface has none.
func List(iface string) ([]Attached, error) {
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return list(h, iface)
}

func list(h *netlink.Handle, iface string) ([]Attached, error) {
	l, err := h.LinkByName(iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up interface %s: %w", iface, err)
	}
	ours, _, err := scan(h, l)
	if err != nil {
		return nil, err
	}
	type key struct {
		handle uint32
		vip    netip.Addr
	}
	idx := map[key]int{}
	var out []Attached
	for _, o := range ours {
		k := key{o.f.Handle, o.vip}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Attached{VIP: o.vip, Version: o.version, Handle: o.f.Handle})
		}
		a := &out[i]
		if o.dir == Ingress {
			a.IngressProg = uint32(o.f.Id)
		} else {
			a.EgressProg = uint32(o.f.Id)
		}
		if a.MapID != 0 {
			continue
		}
		id, err := progMap(ebpf.ProgramID(o.f.Id))
		if err != nil {
			a.Err = err
			continue
		}
		m, err := openDeadlineMap(id)
		if err != nil {
			a.Err = err
			continue
		}
		a.Deadline, a.Err = readDeadline(m)
		m.Close()
		if a.Err == nil {
			a.MapID = uint32(id)
		}
	}
	return out, nil
}

// RemoveAll removes every fence of ours from iface, whatever its VIP: it
// sets each one's deadline to 0, then deletes its filters; if pinDir is set
// it also removes the pins there of the removed fences' maps. The clsact
// qdisc stays (an idle one costs nothing, and it may be someone else's).
// It returns how many fences it removed. A missing interface is not an
// error. For agent start-up and stop, after the VIP address is removed.
// It acts in the network namespace of the calling OS thread.
func RemoveAll(iface, pinDir string) (int, error) {
	if iface == "" || len(iface) > maxIfaceNameLen {
		return 0, fmt.Errorf("%w: Iface %q", ErrInvalidConfig, iface)
	}
	h, err := newHandle()
	if err != nil {
		return 0, fmt.Errorf("remove vip fences on %s: %w", iface, err)
	}
	defer h.Close()
	found, err := list(h, iface)
	if err != nil {
		return 0, fmt.Errorf("remove vip fences on %s: %w", iface, err)
	}
	if len(found) == 0 {
		return 0, nil
	}
	l, err := h.LinkByName(iface)
	if err != nil {
		return 0, fmt.Errorf("remove vip fences on %s: look up interface: %w", iface, err)
	}
	var errs []error
	removedMaps := map[uint32]bool{}
	n := 0
	for _, a := range found {
		if a.MapID != 0 {
			if m, err := ebpf.NewMapFromID(ebpf.MapID(a.MapID)); err == nil {
				if err := m.Update(uint32(0), uint64(0), ebpf.UpdateAny); err != nil {
					errs = append(errs, fmt.Errorf("zero deadline of map %d: %w", a.MapID, err))
				}
				m.Close()
			}
			removedMaps[a.MapID] = true
		}
		ok := true
		for _, dir := range directions {
			if (dir == Ingress && a.IngressProg == 0) || (dir == Egress && a.EgressProg == 0) {
				continue
			}
			if err := deleteFilter(h, l, dir, a.Handle); err != nil {
				errs = append(errs, err)
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	if pinDir != "" {
		errs = append(errs, unpinMaps(pinDir, removedMaps))
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("remove vip fences on %s: %w", iface, err)
	}
	return n, nil
}

// unpinMaps removes the pins in dir of the maps in ids.
func unpinMaps(dir string, ids map[uint32]bool) error {
	if len(ids) == 0 || !isBPFFS(dir) {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read pin dir %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "newbieha_fence_") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			continue
		}
		id, err := mapIDOf(m)
		m.Close()
		if err == nil && ids[uint32(id)] {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}
