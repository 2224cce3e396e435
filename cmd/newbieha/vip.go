package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/vip"
)

// vipCacheFile remembers, in the data dir, which VIP this node may have put
// on which interface, so `newbieha vip release` and the next agent start
// can remove it without the cluster (systemd ExecStopPost).
const vipCacheFile = "vip.json"

type vipCache struct {
	Addr  string `json:"addr"`
	Iface string `json:"iface"`
}

func readVIPCache(dataDir string) (vip.Assignment, bool, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, vipCacheFile))
	if errors.Is(err, os.ErrNotExist) {
		return vip.Assignment{}, false, nil
	}
	if err != nil {
		return vip.Assignment{}, false, fmt.Errorf("read vip cache: %w", err)
	}
	var c vipCache
	if err := json.Unmarshal(b, &c); err != nil {
		return vip.Assignment{}, false, fmt.Errorf("vip cache %s: %w", filepath.Join(dataDir, vipCacheFile), err)
	}
	p, err := netip.ParsePrefix(c.Addr)
	if err != nil {
		return vip.Assignment{}, false, fmt.Errorf("vip cache %s: addr %q: %w", filepath.Join(dataDir, vipCacheFile), c.Addr, err)
	}
	return vip.Assignment{Addr: p, Iface: c.Iface}, true, nil
}

// releaseCachedVIP removes the VIP this node last knew about, if any: the
// fence is closed, the address removed, then the fence detached.
func releaseCachedVIP(dataDir string) (vip.Assignment, bool, error) {
	a, ok, err := readVIPCache(dataDir)
	if err != nil || !ok {
		return a, ok, err
	}
	if err := vip.Cleanup(a, ""); err != nil {
		return a, true, fmt.Errorf("release %s: %w", a, err)
	}
	return a, true, nil
}

// releaseVIPCmd is what `newbieha vip release` does: it removes the VIP
// this node last knew about and says whether an address was there. It
// fails (with a message, and so a non-zero exit) when the data dir is
// missing, when no VIP is known here, and when the address was not on the
// interface: nothing was removed then.
func releaseVIPCmd(dataDir string) (string, error) {
	if fi, err := os.Stat(dataDir); err != nil {
		return "", fmt.Errorf("--data-dir %s: %w", dataDir, err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("--data-dir %s: not a directory", dataDir)
	}
	a, ok, err := readVIPCache(dataDir)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no VIP known on this node (no %s in %s: no agent has set one up here): nothing removed", vipCacheFile, dataDir)
	}
	n, err := vipCleanup(a, "")
	if err != nil {
		return "", fmt.Errorf("release %s: %w", a, err)
	}
	if n == 0 {
		return "", fmt.Errorf("%s was not on %s: nothing removed (any newbieha fence there is detached)", a.Addr, a.Iface)
	}
	return fmt.Sprintf("removed %s from %s", a.Addr, a.Iface), nil
}

// vipCleanup is vip.CleanupCount; tests replace it.
var vipCleanup = vip.CleanupCount

// vipFactory builds real VIP managers and records each in the cache first.
func vipFactory(dataDir string, logger *slog.Logger) cluster.VIPFactory {
	return func(s cluster.VIPSpec) (cluster.VIP, error) {
		b, err := json.Marshal(vipCache{Addr: s.Prefix.String(), Iface: s.Iface})
		if err != nil {
			return nil, err
		}
		if err := pki.WriteFileAtomic(filepath.Join(dataDir, vipCacheFile), b, 0o600); err != nil {
			return nil, err
		}
		return vip.New(vip.Config{
			Assignment:   vip.Assignment{Addr: s.Prefix, Iface: s.Iface},
			Lifetime:     s.Lifetime,
			GARPRepeat:   s.GARPRepeat,
			GARPInterval: s.GARPInterval,
			Refresh:      s.Refresh,
			// The fence's deadline is written on every renewal (10 a
			// second by default); its filters are verified and the
			// address rewritten once a second (docs/vip.md).
			Recheck: time.Second,
			Logger:  logging.Named(logger, "vip"),
		})
	}
}

// ifaceOf returns the interface that holds ip.
func ifaceOf(ip string) (string, error) {
	want, err := netip.ParseAddr(ip)
	if err != nil {
		return "", fmt.Errorf("advertise %q: %w", ip, err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == want {
					return ifc.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no interface holds the advertised address %s: set vip_interface in the node config", ip)
}
