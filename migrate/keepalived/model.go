package keepalived

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is what Parse understood of a keepalived.conf.
type Config struct {
	// Global holds global_defs' statements as written; GlobalLine is
	// where the block starts (0: none).
	Global     []*Stmt
	GlobalLine int
	// Scripts are the vrrp_script blocks, in file order.
	Scripts []*Script
	// Instances are the vrrp_instance blocks, in file order.
	Instances []*Instance
	// Other holds every statement Parse does not model: unknown top-level
	// blocks (vrrp_sync_group, virtual_server, ...) and unknown keywords
	// inside known blocks, each with its line.
	Other []Unmodelled
}

// Unmodelled is a statement Parse keeps without understanding it.
type Unmodelled struct {
	// Where names the enclosing block ("vrrp_instance VI_1"); empty at
	// the top level.
	Where string
	Stmt  *Stmt
}

// Script is a vrrp_script block.
type Script struct {
	Name string
	Line int
	// Script is the command line as written.
	Script string
	// Interval, Timeout: zero when not set.
	Interval, Timeout time.Duration
	// Rise, Fall: zero when not set (Keepalived's default is 1).
	Rise, Fall int
	// Weight and WeightSet: weight 0 is Keepalived's default (a failing
	// script puts the instance in FAULT).
	Weight    int
	WeightSet bool
	// User is "user [group]" as written.
	User     string
	UserLine int
}

// Instance is a vrrp_instance block.
type Instance struct {
	Name            string
	Line            int
	State           string // MASTER or BACKUP; empty when not set
	Interface       string
	InterfaceLine   int
	VirtualRouterID int
	Priority        int // 0 when not set (Keepalived's default is 100)
	AdvertInt       time.Duration
	NoPreempt       bool
	NoPreemptLine   int
	PreemptDelay    time.Duration
	// PreemptDelayLine is where preempt_delay is (0: not set).
	PreemptDelayLine int
	// AuthType and AuthPass come from the authentication block; AuthLine
	// is where it starts (0: none).
	AuthType, AuthPass string
	AuthLine           int
	UnicastSrcIP       netip.Addr
	UnicastSrcLine     int
	UnicastPeers       []netip.Addr
	UnicastPeerLine    int
	VIPs               []VIP
	// TrackScripts are the track_script entries.
	TrackScripts []Track
	// TrackInterfaces are the track_interface entries.
	TrackInterfaces []Track
	// Notify holds notify, notify_master, notify_backup, notify_fault and
	// notify_stop, in file order.
	Notify []*Stmt
	// GARP holds garp_master_repeat, garp_master_refresh and
	// garp_interval, by keyword.
	GARP map[string]*Stmt
}

// VIP is one virtual_ipaddress entry: "ADDR[/PREFIX] [dev IF] [label L] ...".
type VIP struct {
	Line int
	// Prefix is the address with its prefix; HasPrefix says whether the
	// file gave one (Keepalived takes /32 or /128 otherwise).
	Prefix    netip.Prefix
	HasPrefix bool
	Dev       string
	Label     string
	// Extra are other options as written (brd, scope, ...).
	Extra []string
}

// Track is a track_script or track_interface entry.
type Track struct {
	Line      int
	Name      string
	Weight    int
	WeightSet bool
}

// Parse reads a keepalived.conf. Errors name the line and keyword;
// unknown keywords and blocks are not errors but land in Config.Other.
func Parse(src []byte) (*Config, error) {
	stmts, err := parseTree(src)
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	for _, st := range stmts {
		switch st.Keyword {
		case "global_defs":
			if err := needBlock(st, 0); err != nil {
				return nil, err
			}
			cfg.Global, cfg.GlobalLine = st.Block, st.Line
		case "vrrp_script":
			if err := needBlock(st, 1); err != nil {
				return nil, err
			}
			sc, err := parseScript(cfg, st)
			if err != nil {
				return nil, err
			}
			cfg.Scripts = append(cfg.Scripts, sc)
		case "vrrp_instance":
			if err := needBlock(st, 1); err != nil {
				return nil, err
			}
			in, err := parseInstance(cfg, st)
			if err != nil {
				return nil, err
			}
			cfg.Instances = append(cfg.Instances, in)
		default:
			if !st.HasBlock {
				// Every top-level Keepalived keyword opens a block: a bare
				// line here is not Keepalived configuration.
				return nil, &SyntaxError{Line: st.Line, Keyword: st.Keyword,
					Msg: "not a Keepalived statement (at the top level every keyword opens a { } block: global_defs, vrrp_script, vrrp_instance, ...)"}
			}
			cfg.Other = append(cfg.Other, Unmodelled{Stmt: st})
		}
	}
	return cfg, nil
}

// Script returns the vrrp_script called name, or nil.
func (c *Config) Script(name string) *Script {
	for _, s := range c.Scripts {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func needBlock(st *Stmt, args int) error {
	if !st.HasBlock {
		return &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: "needs a { } block"}
	}
	if len(st.Args) != args {
		if args == 1 {
			return &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: fmt.Sprintf("needs exactly one name before {, got %d words", len(st.Args))}
		}
		return &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: "takes no words before {"}
	}
	return nil
}

func where(st *Stmt) string { return st.Keyword + " " + strings.Join(st.Args, " ") }

func badValue(st *Stmt, want string) error {
	return &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: fmt.Sprintf("%q: want %s", strings.Join(st.Args, " "), want)}
}

// oneArg checks that a value keyword has exactly one argument and no block.
func oneArg(st *Stmt) (string, error) {
	if st.HasBlock {
		return "", &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: "takes a value, not a { } block"}
	}
	if len(st.Args) != 1 {
		return "", &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: fmt.Sprintf("takes one value, got %d", len(st.Args))}
	}
	return st.Args[0], nil
}

func intArg(st *Stmt, lo, hi int) (int, error) {
	v, err := oneArg(st)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badValue(st, fmt.Sprintf("a whole number %d-%d", lo, hi))
	}
	return n, nil
}

// secondsArg reads Keepalived's seconds, which may have a fraction.
func secondsArg(st *Stmt, lo, hi float64) (time.Duration, error) {
	v, err := oneArg(st)
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		return 0, badValue(st, fmt.Sprintf("seconds, %g-%g", lo, hi))
	}
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond), nil
}

func noArgs(st *Stmt) error {
	if len(st.Args) != 0 || st.HasBlock {
		return &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: "takes no value"}
	}
	return nil
}

func listBlock(st *Stmt) error {
	if !st.HasBlock {
		return &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: "needs a { } block of entries"}
	}
	if len(st.Args) != 0 {
		return &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: "takes no words before {"}
	}
	return nil
}

func parseScript(cfg *Config, st *Stmt) (*Script, error) {
	sc := &Script{Name: st.Args[0], Line: st.Line}
	for _, k := range st.Block {
		var err error
		switch k.Keyword {
		case "script":
			if k.HasBlock || len(k.Args) == 0 {
				return nil, badValue(k, "the command to run")
			}
			sc.Script = strings.Join(k.Args, " ")
		case "interval":
			sc.Interval, err = secondsArg(k, 0.001, 86400)
		case "timeout":
			sc.Timeout, err = secondsArg(k, 0.001, 86400)
		case "rise":
			sc.Rise, err = intArg(k, 1, math.MaxInt32)
		case "fall":
			sc.Fall, err = intArg(k, 1, math.MaxInt32)
		case "weight":
			// "weight N [reverse]"
			if k.HasBlock || len(k.Args) == 0 || len(k.Args) > 2 || (len(k.Args) == 2 && k.Args[1] != "reverse") {
				return nil, badValue(k, "a number -253..253, optionally followed by reverse")
			}
			n, e := strconv.Atoi(k.Args[0])
			if e != nil || n < -253 || n > 253 {
				return nil, badValue(k, "a number -253..253")
			}
			sc.Weight, sc.WeightSet = n, true
		case "user":
			if k.HasBlock || len(k.Args) == 0 || len(k.Args) > 2 {
				return nil, badValue(k, "USER [GROUP]")
			}
			sc.User, sc.UserLine = strings.Join(k.Args, " "), k.Line
		default:
			cfg.Other = append(cfg.Other, Unmodelled{Where: where(st), Stmt: k})
		}
		if err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(sc.Script) == "" {
		return nil, &SyntaxError{Line: st.Line, Keyword: st.Keyword, Msg: fmt.Sprintf("%s has no script line", sc.Name)}
	}
	return sc, nil
}

func parseInstance(cfg *Config, st *Stmt) (*Instance, error) {
	in := &Instance{Name: st.Args[0], Line: st.Line, GARP: map[string]*Stmt{}}
	for _, k := range st.Block {
		var err error
		switch k.Keyword {
		case "state":
			var v string
			if v, err = oneArg(k); err == nil {
				if v != "MASTER" && v != "BACKUP" {
					err = badValue(k, "MASTER or BACKUP")
				}
				in.State = v
			}
		case "interface":
			in.Interface, err = oneArg(k)
			in.InterfaceLine = k.Line
		case "virtual_router_id":
			in.VirtualRouterID, err = intArg(k, 1, 255)
		case "priority":
			in.Priority, err = intArg(k, 1, 255)
		case "advert_int":
			in.AdvertInt, err = secondsArg(k, 0.01, 255)
		case "nopreempt":
			err = noArgs(k)
			in.NoPreempt, in.NoPreemptLine = true, k.Line
		case "preempt_delay":
			in.PreemptDelay, err = secondsArg(k, 0, 1000)
			in.PreemptDelayLine = k.Line
		case "authentication":
			err = parseAuth(cfg, in, st, k)
		case "unicast_src_ip":
			var v string
			if v, err = oneArg(k); err == nil {
				if in.UnicastSrcIP, err = netip.ParseAddr(v); err != nil {
					err = badValue(k, "an IP address")
				}
				in.UnicastSrcLine = k.Line
			}
		case "unicast_peer":
			if err = listBlock(k); err == nil {
				in.UnicastPeerLine = k.Line
				for _, e := range k.Block {
					a, perr := netip.ParseAddr(e.Keyword)
					if perr != nil || e.HasBlock {
						return nil, &SyntaxError{Line: e.Line, Keyword: "unicast_peer", Msg: fmt.Sprintf("%q is not an IP address", e.Keyword)}
					}
					in.UnicastPeers = append(in.UnicastPeers, a)
				}
			}
		case "virtual_ipaddress":
			if err = listBlock(k); err == nil {
				for _, e := range k.Block {
					v, verr := parseVIP(e)
					if verr != nil {
						return nil, verr
					}
					in.VIPs = append(in.VIPs, v)
				}
			}
		case "track_script", "track_interface":
			if err = listBlock(k); err == nil {
				for _, e := range k.Block {
					t, terr := parseTrack(k.Keyword, e)
					if terr != nil {
						return nil, terr
					}
					if k.Keyword == "track_script" {
						in.TrackScripts = append(in.TrackScripts, t)
					} else {
						in.TrackInterfaces = append(in.TrackInterfaces, t)
					}
				}
			}
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify_deleted", "notify_master_rx_lower_pri":
			if k.HasBlock || len(k.Args) == 0 {
				err = badValue(k, "a script")
			}
			in.Notify = append(in.Notify, k)
		case "garp_master_repeat", "garp_master_refresh", "garp_interval":
			if _, err = oneArg(k); err == nil {
				in.GARP[k.Keyword] = k
			}
		default:
			cfg.Other = append(cfg.Other, Unmodelled{Where: where(st), Stmt: k})
		}
		if err != nil {
			return nil, err
		}
	}
	return in, nil
}

func parseAuth(cfg *Config, in *Instance, parent, st *Stmt) error {
	if err := listBlock(st); err != nil {
		return err
	}
	in.AuthLine = st.Line
	for _, k := range st.Block {
		var err error
		switch k.Keyword {
		case "auth_type":
			in.AuthType, err = oneArg(k)
		case "auth_pass":
			in.AuthPass, err = oneArg(k)
		default:
			cfg.Other = append(cfg.Other, Unmodelled{Where: where(parent) + " authentication", Stmt: k})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseVIP(e *Stmt) (VIP, error) {
	v := VIP{Line: e.Line}
	bad := func(msg string) error {
		return &SyntaxError{Line: e.Line, Keyword: "virtual_ipaddress", Msg: msg}
	}
	if e.HasBlock {
		return v, bad(fmt.Sprintf("%q opens a block; want ADDRESS[/PREFIX] [dev IF] [label L]", e.Keyword))
	}
	addr := e.Keyword
	if strings.Contains(addr, "/") {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return v, bad(fmt.Sprintf("%q is not ADDRESS/PREFIX", addr))
		}
		v.Prefix, v.HasPrefix = p, true
	} else {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return v, bad(fmt.Sprintf("%q is not an IP address", addr))
		}
		v.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	for i := 0; i < len(e.Args); i++ {
		opt := e.Args[i]
		switch opt {
		case "dev", "label", "brd", "scope", "broadcast":
			if i+1 >= len(e.Args) {
				return v, bad(fmt.Sprintf("%s needs a value", opt))
			}
			val := e.Args[i+1]
			i++
			switch opt {
			case "dev":
				v.Dev = val
			case "label":
				v.Label = val
			default:
				v.Extra = append(v.Extra, opt+" "+val)
			}
		default:
			v.Extra = append(v.Extra, opt)
		}
	}
	return v, nil
}

func parseTrack(block string, e *Stmt) (Track, error) {
	t := Track{Line: e.Line, Name: e.Keyword}
	switch {
	case e.HasBlock:
		return t, &SyntaxError{Line: e.Line, Keyword: block, Msg: fmt.Sprintf("%q opens a block; want NAME [weight N]", e.Keyword)}
	case len(e.Args) == 0:
	case (len(e.Args) == 2 || (len(e.Args) == 3 && e.Args[2] == "reverse")) && e.Args[0] == "weight":
		n, err := strconv.Atoi(e.Args[1])
		if err != nil || n < -254 || n > 254 {
			return t, &SyntaxError{Line: e.Line, Keyword: block, Msg: fmt.Sprintf("weight %q: want a number -254..254", e.Args[1])}
		}
		t.Weight, t.WeightSet = n, true
	default:
		return t, &SyntaxError{Line: e.Line, Keyword: block, Msg: fmt.Sprintf("%q: want NAME [weight N]", e.String())}
	}
	return t, nil
}
