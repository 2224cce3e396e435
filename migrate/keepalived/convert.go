package keepalived

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Options are the inputs of Convert besides the configuration.
type Options struct {
	// Source names the converted file in the output's comments.
	Source string
	// CheckScript, when set, is the content of the script the vrrp_script
	// runs (--check-script); CheckScriptName is its file name.
	CheckScript     []byte
	CheckScriptName string
	// ComposeFile and ComposeService, when set, make the compose service
	// the workload (runtime docker). The caller has checked that the
	// service imports.
	ComposeFile    string
	ComposeService string
	// NodeNames maps a node's IP address (unicast_src_ip, unicast_peer) to
	// its newbieha name.
	NodeNames map[netip.Addr]string
	// Preempt asks for failover.preempt; honoured only when the instance
	// has no nopreempt.
	Preempt bool
}

// Default node names: the instance names no nodes, so the MASTER (the
// highest priority) is node1 and the BACKUP node2, the names
// docs/operations.md uses.
const (
	MasterName = "node1"
	BackupName = "node2"
)

// Note is one thing the conversion did not carry over, or carried over
// differently, with what to do instead.
type Note struct {
	// Line is the line in keepalived.conf (0: none, or the check script's).
	Line int
	// What names the setting.
	What string
	// Do says what to do instead.
	Do string
}

// String returns "line N: what: do", on one line of valid UTF-8 (a check
// script's line may be neither).
func (n Note) String() string {
	s := n.What + ": " + n.Do
	if n.Line > 0 {
		s = fmt.Sprintf("line %d: %s", n.Line, s)
	}
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Result is a conversion: the settings and the notes.
type Result struct {
	// Instance is the vrrp_instance converted.
	Instance string
	Settings Settings
	Notes    []Note
}

// Settings is the subset of newbieha's cluster settings (cluster.Settings,
// docs/operations.md "Cluster settings") a conversion writes; everything
// else keeps its default.
type Settings struct {
	VIP      VIPSettings      `yaml:"vip"`
	Service  ServiceSettings  `yaml:"service"`
	Checks   []Check          `yaml:"checks,omitempty"`
	Failover FailoverSettings `yaml:"failover"`
	Hooks    []Hook           `yaml:"hooks,omitempty"`
}

// Hook is one entry of hooks (cluster.HookSettings's schema): the exec
// hook a notify script becomes.
type Hook struct {
	Name   string    `yaml:"name"`
	Events []string  `yaml:"events,flow"`
	Exec   *HookExec `yaml:"exec"`
}

// HookExec is an exec hook's section. Retries is always written: 0, as
// Keepalived runs a notify script once.
type HookExec struct {
	Command []string `yaml:"command,flow"`
	Retries int      `yaml:"retries"`
}

// VIPSettings is the vip section.
type VIPSettings struct {
	Address      string        `yaml:"address"`
	GARPRepeat   int           `yaml:"garp_repeat,omitempty"`
	GARPInterval time.Duration `yaml:"garp_interval,omitempty"`
	GARPRefresh  time.Duration `yaml:"garp_refresh,omitempty"`
}

// ServiceSettings is the service section.
type ServiceSettings struct {
	HealthURL      string `yaml:"health_url,omitempty"`
	Runtime        string `yaml:"runtime"`
	ComposeFile    string `yaml:"compose_file,omitempty"`
	ComposeService string `yaml:"compose_service,omitempty"`
}

// Check is one entry of checks (health.CheckConfig's schema).
type Check struct {
	Name     string        `yaml:"name"`
	Kind     string        `yaml:"kind"`
	Required bool          `yaml:"required"`
	Interval time.Duration `yaml:"interval,omitempty"`
	Timeout  time.Duration `yaml:"timeout,omitempty"`
	Rise     int           `yaml:"rise,omitempty"`
	Fall     int           `yaml:"fall,omitempty"`
	HTTP     *HTTPCheck    `yaml:"http,omitempty"`
	Exec     *ExecCheck    `yaml:"exec,omitempty"`
}

// HTTPCheck is an http check's section.
type HTTPCheck struct {
	URL          string `yaml:"url"`
	ExpectStatus int    `yaml:"expect_status,omitempty"`
}

// ExecCheck is an exec check's section.
type ExecCheck struct {
	Command []string `yaml:"command,flow"`
}

// FailoverSettings is the failover section.
type FailoverSettings struct {
	Preempt   bool   `yaml:"preempt"`
	Preferred string `yaml:"preferred,omitempty"`
}

// ErrNoInstance is returned by Convert for a file without vrrp_instance.
var ErrNoInstance = errors.New("no vrrp_instance: nothing to convert")

// Keepalived's vrrp_script defaults (keepalived.conf(5)).
const (
	keepalivedInterval = time.Second
	keepalivedRiseFall = 1
)

// Convert turns the first vrrp_instance with a virtual_ipaddress (or the
// first instance) into settings, and lists everything else.
func Convert(cfg *Config, opt Options) (Result, error) {
	if len(cfg.Instances) == 0 {
		return Result{}, ErrNoInstance
	}
	in := cfg.Instances[0]
	for _, c := range cfg.Instances {
		if len(c.VIPs) > 0 {
			in = c
			break
		}
	}
	r := Result{Instance: in.Name, Settings: Settings{Service: ServiceSettings{Runtime: "none"}}}
	note := func(line int, what, do string, args ...any) {
		r.Notes = append(r.Notes, Note{Line: line, What: what, Do: fmt.Sprintf(do, args...)})
	}
	for _, o := range cfg.Instances {
		if o != in {
			note(o.Line, "vrrp_instance "+o.Name, "not converted: newbieha manages one VIP (%s) per cluster; run a second newbieha cluster for %s, or add its addresses by other means", vipList(in), vipList(o))
		}
	}
	if err := convertVIP(in, &r, note); err != nil {
		return Result{}, err
	}
	convertGlobal(cfg, &r, note)
	convertFailover(in, opt, &r, note)
	if err := convertChecks(cfg, in, opt, &r, note); err != nil {
		return Result{}, err
	}
	if opt.ComposeFile != "" {
		r.Settings.Service.Runtime = "docker"
		r.Settings.Service.ComposeFile = opt.ComposeFile
		r.Settings.Service.ComposeService = opt.ComposeService
		note(0, "service "+opt.ComposeService+" of "+opt.ComposeFile, "newbieha now runs this container (runtime docker, standby hot: on both GPU nodes); the compose file must be at this path on every GPU node, and the compose stack stopped (docker compose down) when newbieha takes over, or two would run it (restart: unless-stopped brings it back otherwise)")
	} else {
		note(0, "workload", "service.runtime is none: the existing compose stack keeps running the container and newbieha only checks it and moves the VIP; run again with --compose FILE to let newbieha run it")
	}
	uniqueNames(&r, note)
	unmodelled(cfg, note)
	return r, nil
}

// The hook events a notify script maps to (docs/hooks.md).
const (
	eventBecameHolder  = "became-holder"
	eventBecameStandby = "became-standby"
	eventHealthChanged = "health-changed"
)

// onlyUnhealthy runs the rest of a command only for a health-changed that
// says unhealthy: Keepalived's FAULT.
const onlyUnhealthy = `[ "$NEWBIEHA_HEALTHY" = false ] || exit 0; `

// convertNotify turns notify_master, notify_backup, notify_fault and
// notify into exec hooks, and lists the other notify keywords.
func convertNotify(in *Instance, r *Result, note noteFunc) {
	for _, n := range in.Notify {
		script := strings.Join(n.Args, " ")
		what := n.Keyword + " " + script
		switch n.Keyword {
		case "notify_master":
			r.Settings.Hooks = append(r.Settings.Hooks, Hook{Name: "notify-master", Events: []string{eventBecameHolder}, Exec: &HookExec{Command: hookCommand(script, "")}})
			note(n.Line, what, "an exec hook on became-holder (this node was granted the lease and holds the VIP); it runs once, as Keepalived ran it, with the event in NEWBIEHA_* variables (docs/hooks.md); set exec.retries if running it twice is safe")
		case "notify_backup":
			r.Settings.Hooks = append(r.Settings.Hooks, Hook{Name: "notify-backup", Events: []string{eventBecameStandby}, Exec: &HookExec{Command: hookCommand(script, "")}})
			note(n.Line, what, "an exec hook on became-standby (the state names another node active; also once at the agent's start, as Keepalived's BACKUP at start); a holder that steps down runs released first")
		case "notify_fault":
			r.Settings.Hooks = append(r.Settings.Hooks, Hook{Name: "notify-fault", Events: []string{eventHealthChanged}, Exec: &HookExec{Command: hookCommand(script, onlyUnhealthy)}})
			note(n.Line, what, "an exec hook on health-changed, run only when the node turns unhealthy (NEWBIEHA_HEALTHY=false), as FAULT; newbieha also tells a recovery, which this hook skips")
		case "notify":
			prio := strconv.Itoa(prioOf(in))
			for _, st := range []struct{ state, event, guard string }{
				{"MASTER", eventBecameHolder, ""}, {"BACKUP", eventBecameStandby, ""}, {"FAULT", eventHealthChanged, onlyUnhealthy},
			} {
				r.Settings.Hooks = append(r.Settings.Hooks, Hook{Name: "notify-" + strings.ToLower(st.state), Events: []string{st.event},
					Exec: &HookExec{Command: append(hookCommand(script, st.guard), "INSTANCE", in.Name, st.state, prio)}})
			}
			note(n.Line, what, "three exec hooks, each with Keepalived's arguments: INSTANCE %s MASTER %s on became-holder, BACKUP on became-standby, FAULT on health-changed to unhealthy; Keepalived's STOP has no event (a stopping holder runs released)", in.Name, prio)
		default:
			note(n.Line, what, "not carried over: newbieha has no event for it; the closest are released (a holder that stops or steps down) and became-standby (docs/hooks.md)")
		}
	}
	used := map[string]bool{}
	for i := range r.Settings.Hooks {
		h := &r.Settings.Hooks[i]
		name := h.Name
		for n := 2; used[name]; n++ {
			name = h.Name + "-" + strconv.Itoa(n)
		}
		h.Name = name
		used[name] = true
	}
}

// hookCommand is the argv of an exec hook that runs a notify script line
// as Keepalived would: plain words with an absolute program as they are;
// anything else (shell syntax, a program found through PATH, a guard in
// front) through /bin/sh -c, with the hook's extra arguments passed on
// as "$@".
func hookCommand(script, guard string) []string {
	words := strings.Fields(script)
	if guard == "" && len(words) > 0 && path.IsAbs(words[0]) && !strings.ContainsAny(script, "|&;<>()$`\\\"'*?[]#~") {
		return words
	}
	return []string{"/bin/sh", "-c", guard + script + ` "$@"`, "notify"}
}

// uniqueNames renames checks whose name is taken: by an earlier check, or
// by the checks the agent adds itself (service for health_url, container
// for runtime docker).
func uniqueNames(r *Result, note noteFunc) {
	used := map[string]bool{}
	if r.Settings.Service.HealthURL != "" {
		used["service"] = true
	}
	if r.Settings.Service.Runtime == "docker" {
		used["container"] = true
	}
	for i := range r.Settings.Checks {
		c := &r.Settings.Checks[i]
		name := c.Name
		for n := 2; used[name]; n++ {
			suffix := "-" + strconv.Itoa(n)
			name = c.Name[:min(len(c.Name), 63-len(suffix))] + suffix
		}
		if name != c.Name {
			note(0, "check "+c.Name, "renamed %s: the name is taken by another check", name)
			c.Name = name
		}
		used[name] = true
	}
}

type noteFunc func(line int, what, do string, args ...any)

func vipList(in *Instance) string {
	if len(in.VIPs) == 0 {
		return "no address"
	}
	var s []string
	for _, v := range in.VIPs {
		s = append(s, v.Prefix.String())
	}
	return strings.Join(s, ", ")
}

func convertVIP(in *Instance, r *Result, note noteFunc) error {
	if len(in.VIPs) == 0 {
		note(in.Line, "vrrp_instance "+in.Name, "has no virtual_ipaddress: the settings have no VIP (vip.address empty), newbieha only names the active node")
	} else {
		v := in.VIPs[0]
		a := v.Prefix.Addr()
		if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || (a.Is4() && v.Prefix.Bits() < 8) {
			return &SyntaxError{Line: v.Line, Keyword: "virtual_ipaddress", Msg: fmt.Sprintf("%s cannot be newbieha's VIP (unspecified, loopback, multicast or a prefix shorter than /8)", v.Prefix)}
		}
		r.Settings.VIP.Address = v.Prefix.String()
		if !v.HasPrefix {
			note(v.Line, "virtual_ipaddress "+v.Prefix.Addr().String(), "no prefix: Keepalived adds it as /%d; newbieha does too, but the VIP should carry its subnet's prefix (e.g. /24) so config apply can check it against the members' subnets: edit vip.address", v.Prefix.Bits())
		}
		iface, line := in.Interface, in.InterfaceLine
		if v.Dev != "" {
			iface, line = v.Dev, v.Line
		}
		if iface != "" {
			note(line, "interface "+iface, "the VIP's interface is per node in newbieha: set vip_interface: %s in each GPU node's config (newbieha.yaml in its data dir) at init/join; left unset, it is the interface holding the node's advertised address", iface)
		}
		if v.Label != "" {
			note(v.Line, "label "+v.Label, "not carried over: newbieha adds the address without a label; tools that look for the %s alias must look for the address instead", v.Label)
		}
		if len(v.Extra) > 0 {
			note(v.Line, "virtual_ipaddress options "+strings.Join(v.Extra, " "), "not carried over: newbieha adds the address with the prefix only (scope global, broadcast from the prefix)")
		}
		for _, o := range in.VIPs[1:] {
			note(o.Line, "virtual_ipaddress "+o.Prefix.String(), "not carried over: newbieha moves one VIP; point clients at %s or add this address by other means", v.Prefix)
		}
	}
	if in.Interface == "" {
		note(in.Line, "vrrp_instance "+in.Name, "has no interface line (Keepalived requires one); set vip_interface in each GPU node's config if the default is wrong")
	}
	if in.VirtualRouterID != 0 {
		note(0, "virtual_router_id "+strconv.Itoa(in.VirtualRouterID), "not needed: newbieha sends no VRRP; keep the id unused until Keepalived is gone from this network")
	}
	if in.AdvertInt != 0 {
		note(0, "advert_int "+in.AdvertInt.String(), "not carried over: a dead holder is detected by its lease (timings.lease_duration, 500ms by default, docs/timings.md), not by adverts")
	}
	if in.AuthLine != 0 {
		what := "authentication"
		if in.AuthPass != "" {
			what += " (auth_type " + in.AuthType + ", auth_pass)"
		}
		note(in.AuthLine, what, "not carried over: members authenticate each other with mutual TLS from the join token (docs/security.md); nothing to set, and the password is not copied")
	}
	if in.UnicastSrcLine != 0 || in.UnicastPeerLine != 0 {
		var peers []string
		for _, p := range in.UnicastPeers {
			peers = append(peers, p.String())
		}
		note(max(in.UnicastSrcLine, in.UnicastPeerLine), "unicast_src_ip/unicast_peer ("+strings.Join(append([]string{in.UnicastSrcIP.String()}, peers...), ", ")+")", "not carried over: members find each other through init/join (--advertise ADDRESS on each node); no multicast is used")
	}
	for _, t := range in.TrackInterfaces {
		note(t.Line, "track_interface "+t.Name, "not carried over: add a check that fails when the link is down, e.g. {name: link-%s, kind: exec, required: true, exec: {command: [sh, -c, \"grep -qx up /sys/class/net/%s/operstate\"]}}", t.Name, t.Name)
	}
	convertNotify(in, r, note)
	if s, ok := in.GARP["garp_master_repeat"]; ok {
		if n, err := strconv.Atoi(s.Args[0]); err == nil && n >= 1 && n <= 100 {
			r.Settings.VIP.GARPRepeat = n
		} else {
			note(s.Line, s.String(), "not carried over: vip.garp_repeat must be 1-100")
		}
	}
	if s, ok := in.GARP["garp_master_refresh"]; ok {
		if n, err := strconv.Atoi(s.Args[0]); err == nil && n >= 1 {
			r.Settings.VIP.GARPRefresh = time.Duration(n) * time.Second
		} else if err != nil || n < 0 {
			note(s.Line, s.String(), "not carried over: want whole seconds for vip.garp_refresh")
		}
	}
	if s, ok := in.GARP["garp_interval"]; ok {
		garpInterval(s, r, note)
	}
	return nil
}

func garpInterval(s *Stmt, r *Result, note noteFunc) {
	f, err := strconv.ParseFloat(s.Args[0], 64)
	d := time.Duration(f * float64(time.Second)).Round(time.Millisecond)
	if err != nil || d < 10*time.Millisecond || d > 10*time.Second {
		note(s.Line, s.String(), "not carried over: vip.garp_interval must be 10ms-10s")
		return
	}
	r.Settings.VIP.GARPInterval = d
}

func convertGlobal(cfg *Config, r *Result, note noteFunc) {
	for _, s := range cfg.Global {
		switch s.Keyword {
		case "vrrp_garp_master_repeat":
			if r.Settings.VIP.GARPRepeat == 0 {
				if n, err := strconv.Atoi(strings.Join(s.Args, "")); err == nil && n >= 1 && n <= 100 {
					r.Settings.VIP.GARPRepeat = n
					continue
				}
			}
		case "vrrp_garp_interval":
			if r.Settings.VIP.GARPInterval == 0 && len(s.Args) == 1 {
				garpInterval(s, r, note)
				continue
			}
		case "vrrp_garp_master_refresh":
			if r.Settings.VIP.GARPRefresh == 0 {
				if n, err := strconv.Atoi(strings.Join(s.Args, "")); err == nil && n >= 1 {
					r.Settings.VIP.GARPRefresh = time.Duration(n) * time.Second
					continue
				}
			}
		case "notification_email", "notification_email_from", "smtp_server", "smtp_connect_timeout", "smtp_alert":
			note(s.Line, "global_defs "+s.Keyword, "not carried over: newbieha sends no mail; alert on its metrics (docs/examples/ has alert rules)")
			continue
		case "router_id":
			note(s.Line, "global_defs router_id "+strings.Join(s.Args, " "), "not needed: each node has its name (--name at init/join)")
			continue
		case "script_user", "enable_script_security":
			note(s.Line, "global_defs "+s.String(), "not carried over: exec checks run as the agent's user")
			continue
		}
		note(s.Line, "global_defs "+s.String(), "not carried over: newbieha has no equivalent")
	}
}

// nodeName names the node with address a (or the default name).
func nodeName(opt Options, a netip.Addr, def string) (string, bool) {
	if a.IsValid() {
		if n, ok := opt.NodeNames[a]; ok {
			return n, true
		}
	}
	return def, false
}

func convertFailover(in *Instance, opt Options, r *Result, note noteFunc) {
	prio := prioOf(in)
	// This file's node is the MASTER, or is the BACKUP of a MASTER the
	// file does not describe (its single unicast peer, when it has one).
	master := in.State == "MASTER" || (in.State == "" && prio == 255)
	var who netip.Addr
	def := MasterName
	if master {
		who = in.UnicastSrcIP
	} else if len(in.UnicastPeers) == 1 {
		who = in.UnicastPeers[0]
	}
	name, named := nodeName(opt, who, def)
	r.Settings.Failover.Preferred = name
	desc := fmt.Sprintf("the node of this file (state %s, priority %d)", orDefault(in.State, "BACKUP"), prio)
	if !master {
		desc = fmt.Sprintf("the MASTER this file is the backup of (this one is state %s, priority %d)", orDefault(in.State, "BACKUP"), prio)
	}
	if named {
		note(0, "failover.preferred: "+name, "%s, named %s by --node-name-for %s", desc, name, who)
	} else {
		how := "run again with --node-name-for IP=NAME (the IP of unicast_src_ip or unicast_peer)"
		if !who.IsValid() {
			how = "the file names no address of that node (no unicast_src_ip/unicast_peer): name it '" + name + "' at init or edit failover.preferred"
		}
		note(0, "failover.preferred: "+name, "%s. Keepalived names no nodes: the MASTER is called %s and the BACKUP %s here (by priority); use the names you give them at init/join (--name): %s", desc, MasterName, BackupName, how)
	}
	for ip := range opt.NodeNames {
		if ip != in.UnicastSrcIP && !containsAddr(in.UnicastPeers, ip) {
			note(0, "--node-name-for "+ip.String(), "matched no unicast_src_ip or unicast_peer of vrrp_instance %s: not used", in.Name)
		}
	}
	switch {
	case in.NoPreempt:
		r.Settings.Failover.Preempt = false
		what := "nopreempt"
		if opt.Preempt {
			what += " (and --preempt)"
		}
		note(in.NoPreemptLine, what, "failover.preempt is off: a recovered node does not take the role back; --preempt is ignored while the file says nopreempt")
	case opt.Preempt:
		r.Settings.Failover.Preempt = true
	default:
		note(0, "preemption", "Keepalived preempted (no nopreempt): the higher priority node took the VIP back when it recovered. newbieha does not by default (failover.preempt: false), which avoids a second client-visible switch; run again with --preempt to keep Keepalived's behaviour")
	}
	if in.PreemptDelayLine != 0 {
		note(in.PreemptDelayLine, "preempt_delay "+in.PreemptDelay.String(), "not carried over as such: failover.hold_down (30s by default) keeps health-driven moves, a preempt too, that long after the last change")
	}
}

func prioOf(in *Instance) int {
	if in.Priority == 0 {
		return 100 // Keepalived's default
	}
	return in.Priority
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}

// checkName makes a vrrp_script name a valid check name.
func checkName(s string) string {
	var b strings.Builder
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '.' || c == '_' || c == '-'))
		if ok {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	n := b.String()
	if len(n) > 63 {
		n = n[:63]
	}
	if n == "" || n[0] == '_' {
		n = "s" + n
	}
	return n
}

// command turns a vrrp_script line into an argv: plain words as they are,
// anything with shell syntax through sh -c.
func command(script string) []string {
	if strings.ContainsAny(script, "|&;<>()$`\\\"'*?[]#~") {
		return []string{"sh", "-c", script}
	}
	return strings.Fields(script)
}

func convertChecks(cfg *Config, in *Instance, opt Options, r *Result, note noteFunc) error {
	tracked := map[string]bool{}
	var scripts []*Script
	var weights []Track
	for _, t := range in.TrackScripts {
		sc := cfg.Script(t.Name)
		if sc == nil {
			note(t.Line, "track_script "+t.Name, "names no vrrp_script (Keepalived ignores it too): nothing converted")
			continue
		}
		if tracked[t.Name] {
			continue
		}
		tracked[t.Name] = true
		scripts = append(scripts, sc)
		if t.WeightSet {
			weights = append(weights, t)
		}
	}
	for _, sc := range cfg.Scripts {
		if !tracked[sc.Name] {
			note(sc.Line, "vrrp_script "+sc.Name, "not tracked by vrrp_instance %s: not converted", in.Name)
		}
	}
	if len(scripts) == 0 && len(opt.CheckScript) == 0 {
		note(in.Line, "health checks", "vrrp_instance %s tracks no script: the settings have no checks, so nothing but a crash moves the VIP; add checks (docs/health.md)", in.Name)
		return nil
	}
	// The --check-script file is the tracked script whose path ends in its
	// name, or the only tracked script.
	var target *Script
	if len(opt.CheckScript) > 0 {
		for _, sc := range scripts {
			if f := strings.Fields(sc.Script); len(f) > 0 && opt.CheckScriptName != "" && path.Base(f[0]) == path.Base(opt.CheckScriptName) {
				target = sc
			}
		}
		if target == nil && len(scripts) == 1 {
			target = scripts[0]
			if f := strings.Fields(target.Script); opt.CheckScriptName != "" && len(f) > 0 && path.Base(f[0]) != path.Base(opt.CheckScriptName) {
				note(target.Line, "--check-script "+opt.CheckScriptName, "taken as the script of vrrp_script %s (%s), whose name differs", target.Name, target.Script)
			}
		}
		if target == nil {
			return fmt.Errorf("--check-script %s: matches none of the tracked scripts (%s) by file name", opt.CheckScriptName, scriptNames(scripts))
		}
	}
	var native []Check
	replaced := false
	if target != nil {
		cs := RecogniseScript(opt.CheckScript)
		native = nativeChecks(cs, opt, r, note)
		replaced = cs.Complete()
		if !replaced {
			for _, l := range cs.Unrecognised {
				note(0, fmt.Sprintf("%s line %d: %s", opt.CheckScriptName, l.Line, l.Text), "no native check does this: the script stays a required exec check")
			}
		}
	} else {
		note(0, "check scripts", "run again with --check-script FILE (the script vrrp_script runs) to replace the usual container/HTTP/nvidia-smi checks with native ones")
	}
	r.Settings.Checks = append(r.Settings.Checks, native...)
	for _, sc := range scripts {
		c := execCheck(sc, note)
		if sc == target && replaced {
			c.Required = false
			note(sc.Line, "vrrp_script "+sc.Name, "kept as an informational exec check (required: false): the native checks decide; delete it once they have proved themselves")
		}
		r.Settings.Checks = append(r.Settings.Checks, c)
		if sc.User != "" {
			note(sc.UserLine, "vrrp_script "+sc.Name+" user "+sc.User, "not carried over: the check runs as the agent's user (root); wrap it in runuser -u USER -- ... if it must not")
		}
		weight, wline, set := sc.Weight, sc.Line, sc.WeightSet
		for _, t := range weights {
			if t.Name == sc.Name {
				weight, wline, set = t.Weight, t.Line, true
			}
		}
		if set && weight != 0 {
			note(wline, fmt.Sprintf("weight %d of %s", weight, sc.Name), "not carried over: newbieha has no priorities; a failing required check makes the node unhealthy and moves the VIP to a healthy node. In Keepalived a weighted script moved the VIP only when %d outweighed the gap between the nodes' priorities (this one %d): with 100 and 90 and weight 2 it never did, so expect failovers where there were none", abs(weight), prioOf(in))
		}
	}
	return nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func scriptNames(s []*Script) string {
	var n []string
	for _, sc := range s {
		n = append(n, sc.Name+": "+sc.Script)
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, "; ")
}

func execCheck(sc *Script, note noteFunc) Check {
	interval := sc.Interval
	if interval == 0 {
		interval = keepalivedInterval
	}
	timeout := sc.Timeout
	if timeout == 0 || timeout >= interval {
		// newbieha needs timeout < interval; Keepalived lets a script
		// without timeout run up to the next interval.
		t := interval * 4 / 5
		if sc.Timeout != 0 {
			note(sc.Line, fmt.Sprintf("vrrp_script %s timeout %v", sc.Name, sc.Timeout), "a check's timeout must be shorter than its interval (%v): set to %v", interval, t)
		}
		timeout = t
	}
	rise, fall := sc.Rise, sc.Fall
	if rise == 0 {
		rise = keepalivedRiseFall
	}
	if fall == 0 {
		fall = keepalivedRiseFall
	}
	if rise > 100 || fall > 100 {
		note(sc.Line, fmt.Sprintf("vrrp_script %s rise %d fall %d", sc.Name, rise, fall), "rise and fall are at most 100: capped")
		rise, fall = min(rise, 100), min(fall, 100)
	}
	return Check{Name: checkName(sc.Name), Kind: "exec", Required: true, Interval: interval, Timeout: timeout,
		Rise: rise, Fall: fall, Exec: &ExecCheck{Command: command(sc.Script)}}
}

// nativeChecks returns the checks that replace what the script does.
func nativeChecks(cs CheckScript, opt Options, r *Result, note noteFunc) []Check {
	var out []Check
	if cs.Container != "" {
		if opt.ComposeFile != "" {
			note(0, fmt.Sprintf("%s line %d: container %s running", opt.CheckScriptName, cs.ContainerLine, cs.Container), "replaced by the container check that runtime docker adds by itself (required, named container)")
		} else {
			// The native container check reads the container newbieha
			// runs (runtime docker); with runtime none it has none.
			out = append(out, Check{Name: "container", Kind: "exec", Required: true,
				Exec: &ExecCheck{Command: []string{"sh", "-c", fmt.Sprintf(`test "$(docker inspect --format '{{.State.Running}}' %s 2>/dev/null)" = true`, cs.Container)}}})
			note(0, fmt.Sprintf("%s line %d: container %s running", opt.CheckScriptName, cs.ContainerLine, cs.Container), "an exec check named container: the native container check needs runtime docker (run again with --compose FILE)")
		}
	}
	if cs.URL != "" {
		if cs.ExpectStatus == 200 {
			r.Settings.Service.HealthURL = cs.URL
			note(0, fmt.Sprintf("%s line %d: curl %s", opt.CheckScriptName, cs.HTTPLine, cs.URL), "service.health_url: a required http check named service, every 1s, fall 2")
		} else {
			out = append(out, Check{Name: "service", Kind: "http", Required: true, HTTP: &HTTPCheck{URL: cs.URL, ExpectStatus: cs.ExpectStatus}})
		}
	}
	if cs.GPU {
		out = append(out, Check{Name: "gpu", Kind: "gpu", Required: true})
		note(0, fmt.Sprintf("%s line %d: nvidia-smi", opt.CheckScriptName, cs.GPULine), "a required gpu check (NVML: devices answer, temperature, ECC, Xid); add gpu: {expected_devices: N} to require N GPUs")
	}
	return out
}

// unmodelled lists every statement Parse kept without understanding.
func unmodelled(cfg *Config, note noteFunc) {
	for _, u := range cfg.Other {
		st := u.Stmt
		what := st.String()
		if u.Where != "" {
			what = u.Where + ": " + what
		}
		do := "not carried over: newbieha has no equivalent"
		switch st.Keyword {
		case "virtual_server", "virtual_server_group":
			do = "not carried over: newbieha does no load balancing (LVS); keep ipvsadm/LVS configured by other means, or put a load balancer behind the VIP"
		case "vrrp_sync_group":
			do = "not carried over: newbieha moves one VIP, so there is nothing to keep in sync"
		case "static_ipaddress", "static_routes", "static_rules", "virtual_routes", "virtual_rules":
			do = "not carried over: configure these addresses and routes in the host's network configuration"
		}
		note(st.Line, what, "%s", do)
	}
}

// YAML renders the settings with the notes as numbered comments on top.
func (r Result) YAML(source string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Cluster settings converted by `newbieha import keepalived` from %s (vrrp_instance %s).\n", orDefault(source, "keepalived.conf"), r.Instance)
	fmt.Fprintf(&b, "# Check with `newbieha config apply FILE --dry-run`. Not carried over, or carried over differently (%d):\n", len(r.Notes))
	for i, n := range r.SortedNotes() {
		fmt.Fprintf(&b, "# %2d. %s\n", i+1, n)
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(r.Settings); err != nil {
		return nil, fmt.Errorf("encode settings: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode settings: %w", err)
	}
	return b.Bytes(), nil
}

// SortedNotes returns the notes with those naming a line first, by line.
func (r Result) SortedNotes() []Note {
	out := append([]Note(nil), r.Notes...)
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := out[i].Line, out[j].Line
		if (li == 0) != (lj == 0) {
			return li != 0
		}
		return li < lj
	})
	return out
}
