package keepalived

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/health"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseOutput reads a conversion's YAML as `config apply` does
// (cluster.ParseSettings, strict) and its checks as the agent does
// (health's schema, strict, defaults, Validate).
func parseOutput(t *testing.T, out []byte) (cluster.Settings, []health.CheckConfig) {
	t.Helper()
	s, err := cluster.ParseSettings(out)
	if err != nil {
		t.Fatalf("ParseSettings: %v\n%s", err, out)
	}
	j, err := json.Marshal(s.Checks)
	if err != nil {
		t.Fatal(err)
	}
	var cfg health.Config
	dec := yaml.NewDecoder(bytes.NewReader(j))
	dec.KnownFields(true)
	if len(s.Checks) > 0 {
		if err := dec.Decode(&cfg.Checks); err != nil {
			t.Fatalf("checks: %v\n%s", err, out)
		}
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		t.Fatalf("checks do not validate: %v\n%s", err, out)
	}
	return s, cfg.Checks
}

const unicastBackup = `vrrp_script chk_model {
    script "/usr/local/bin/check_newbie.sh"
    interval 2
    timeout 1
    rise 2
    fall 3
}
vrrp_instance VI_1 {
    state BACKUP
    interface ens192
    virtual_router_id 60
    priority 90
    advert_int 1
    unicast_src_ip 10.20.0.12
    unicast_peer {
        10.20.0.11
    }
    virtual_ipaddress {
        10.20.0.100/24
    }
    track_script {
        chk_model
    }
}
`

const twoInstances = `vrrp_sync_group G1 {
    group {
        VI_MODEL
        VI_ADMIN
    }
}
vrrp_instance VI_MODEL {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        10.1.0.10/24
    }
}
vrrp_instance VI_ADMIN {
    state MASTER
    interface eth1
    virtual_router_id 52
    priority 150
    virtual_ipaddress {
        10.2.0.10/24
    }
}
`

const weights = `vrrp_script chk_http {
    script "curl -fs http://127.0.0.1:8080/health"
    interval 1
    weight -20
}
vrrp_script chk_gpu {
    script "/usr/bin/nvidia-smi"
    interval 10
    timeout 10
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.3.0.10/24
    }
    track_script {
        chk_http
        chk_gpu weight 15
    }
}
`

const noPreempt = `vrrp_instance VI_1 {
    state BACKUP
    nopreempt
    preempt_delay 60
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.4.0.10/24
    }
}
`

const everythingElse = `global_defs {
    router_id gpu1
    notification_email {
        ops@example.com
    }
    vrrp_garp_master_refresh 60
    enable_script_security
}
vrrp_script chk {
    script "/usr/local/bin/check_newbie.sh"
    user keepalived_script
}
vrrp_script unused {
    script /bin/true
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    garp_master_repeat 3
    garp_interval 0.1
    virtual_ipaddress {
        10.5.0.10 dev eth0 label eth0:vip
        10.5.0.11/24
    }
    track_script {
        chk
        missing
    }
    track_interface {
        eth0
    }
    notify_master /etc/keepalived/to_master.sh
    notify "/etc/keepalived/notify.sh"
    smtp_alert
}
virtual_server 10.5.0.10 8080 {
    lb_algo rr
}
`

func TestConvert(t *testing.T) {
	seedScript := readTestdata(t, "seed-check_newbie.sh")
	seedExec := Check{Name: "chk_newbie", Kind: "exec", Required: false, Interval: 5 * time.Second, Timeout: 4 * time.Second, Rise: 1, Fall: 1,
		Exec: &ExecCheck{Command: []string{"/usr/local/bin/check_newbie.sh"}}}
	containerExec := Check{Name: "container", Kind: "exec", Required: true,
		Exec: &ExecCheck{Command: []string{"sh", "-c", `test "$(docker inspect --format '{{.State.Running}}' newbie-image 2>/dev/null)" = true`}}}
	gpu := Check{Name: "gpu", Kind: "gpu", Required: true}
	cases := []struct {
		name      string
		conf      string
		opt       Options
		want      Settings
		notes     []string // each must be in some note
		noteLines []int    // lines that must have a note
		notNotes  []string // none may contain these
	}{
		{
			name: "seed master",
			conf: readTestdata(t, "seed-keepalived-master.conf"),
			opt:  Options{CheckScript: []byte(seedScript), CheckScriptName: "check_newbie.sh"},
			want: Settings{
				VIP:      VIPSettings{Address: "192.168.1.100/24"},
				Service:  ServiceSettings{HealthURL: "http://localhost:8080/health", Runtime: "none"},
				Checks:   []Check{containerExec, gpu, seedExec},
				Failover: FailoverSettings{Preferred: "node1"},
			},
			notes:     []string{"auth_pass", "vip_interface: eth0", "weight 2 of chk_newbie", "--preempt", "the node of this file (state MASTER, priority 100)", "advert_int", "virtual_router_id 51", "informational"},
			noteLines: []int{3, 11, 15},
			notNotes:  []string{"your_secure_password", "whose name differs"},
		},
		{
			name: "seed master with compose and --preempt",
			conf: readTestdata(t, "seed-keepalived-master.conf"),
			opt:  Options{CheckScript: []byte(seedScript), CheckScriptName: "check_newbie.sh", ComposeFile: "/srv/newbie/docker-compose.yml", ComposeService: "newbie-image", Preempt: true},
			want: Settings{
				VIP:      VIPSettings{Address: "192.168.1.100/24"},
				Service:  ServiceSettings{HealthURL: "http://localhost:8080/health", Runtime: "docker", ComposeFile: "/srv/newbie/docker-compose.yml", ComposeService: "newbie-image"},
				Checks:   []Check{gpu, seedExec},
				Failover: FailoverSettings{Preferred: "node1", Preempt: true},
			},
			notes:    []string{"runtime docker adds by itself", "docker compose down"},
			notNotes: []string{"Keepalived preempted"},
		},
		{
			name: "seed backup",
			conf: readTestdata(t, "seed-keepalived-backup.conf"),
			opt:  Options{CheckScript: []byte(seedScript), CheckScriptName: "check_newbie.sh"},
			want: Settings{
				VIP:      VIPSettings{Address: "192.168.1.100/24"},
				Service:  ServiceSettings{HealthURL: "http://localhost:8080/health", Runtime: "none"},
				Checks:   []Check{containerExec, gpu, seedExec},
				Failover: FailoverSettings{Preferred: "node1"},
			},
			notes: []string{"the MASTER this file is the backup of (this one is state BACKUP, priority 90)"},
		},
		{
			name: "seed master without the script",
			conf: readTestdata(t, "seed-keepalived-master.conf"),
			want: Settings{
				VIP:      VIPSettings{Address: "192.168.1.100/24"},
				Service:  ServiceSettings{Runtime: "none"},
				Checks:   []Check{{Name: "chk_newbie", Kind: "exec", Required: true, Interval: 5 * time.Second, Timeout: 4 * time.Second, Rise: 1, Fall: 1, Exec: &ExecCheck{Command: []string{"/usr/local/bin/check_newbie.sh"}}}},
				Failover: FailoverSettings{Preferred: "node1"},
			},
			notes: []string{"--check-script FILE"},
		},
		{
			name: "unicast backup with node names",
			conf: unicastBackup,
			opt: Options{NodeNames: map[netip.Addr]string{netip.MustParseAddr("10.20.0.11"): "gpu-a", netip.MustParseAddr("10.20.0.12"): "gpu-b", netip.MustParseAddr("10.9.9.9"): "stray"},
				CheckScript: []byte(seedScript), CheckScriptName: "/srv/check_newbie.sh", ComposeFile: "/srv/c.yml", ComposeService: "newbie-image"},
			want: Settings{
				VIP:     VIPSettings{Address: "10.20.0.100/24"},
				Service: ServiceSettings{HealthURL: "http://localhost:8080/health", Runtime: "docker", ComposeFile: "/srv/c.yml", ComposeService: "newbie-image"},
				Checks: []Check{gpu, {Name: "chk_model", Kind: "exec", Required: false, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
					Exec: &ExecCheck{Command: []string{"/usr/local/bin/check_newbie.sh"}}}},
				Failover: FailoverSettings{Preferred: "gpu-a"},
			},
			notes:     []string{"unicast_src_ip/unicast_peer (10.20.0.12, 10.20.0.11)", "named gpu-a by --node-name-for 10.20.0.11", "--node-name-for 10.9.9.9", "vip_interface: ens192"},
			noteLines: []int{10, 15},
		},
		{
			name: "unicast backup, default names",
			conf: unicastBackup,
			want: Settings{
				VIP:     VIPSettings{Address: "10.20.0.100/24"},
				Service: ServiceSettings{Runtime: "none"},
				Checks: []Check{{Name: "chk_model", Kind: "exec", Required: true, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
					Exec: &ExecCheck{Command: []string{"/usr/local/bin/check_newbie.sh"}}}},
				Failover: FailoverSettings{Preferred: "node1"},
			},
			notes: []string{"--node-name-for IP=NAME"},
		},
		{
			name: "two instances",
			conf: twoInstances,
			want: Settings{
				VIP:      VIPSettings{Address: "10.1.0.10/24"},
				Service:  ServiceSettings{Runtime: "none"},
				Failover: FailoverSettings{Preferred: "node1"},
			},
			notes:     []string{"vrrp_instance VI_ADMIN: not converted: newbieha manages one VIP (10.1.0.10/24) per cluster; run a second newbieha cluster for 10.2.0.10/24", "vrrp_sync_group G1", "tracks no script"},
			noteLines: []int{1, 16},
		},
		{
			name: "weights",
			conf: weights,
			want: Settings{
				VIP:     VIPSettings{Address: "10.3.0.10/24"},
				Service: ServiceSettings{Runtime: "none"},
				Checks: []Check{
					{Name: "chk_http", Kind: "exec", Required: true, Interval: time.Second, Timeout: 800 * time.Millisecond, Rise: 1, Fall: 1, Exec: &ExecCheck{Command: []string{"curl", "-fs", "http://127.0.0.1:8080/health"}}},
					{Name: "chk_gpu", Kind: "exec", Required: true, Interval: 10 * time.Second, Timeout: 8 * time.Second, Rise: 1, Fall: 1, Exec: &ExecCheck{Command: []string{"/usr/bin/nvidia-smi"}}},
				},
				Failover: FailoverSettings{Preferred: "node1"},
			},
			notes:     []string{"weight -20 of chk_http", "weight 15 of chk_gpu", "vrrp_script chk_gpu timeout 10s"},
			noteLines: []int{1, 21},
		},
		{
			name: "nopreempt with --preempt",
			conf: noPreempt,
			opt:  Options{Preempt: true},
			want: Settings{
				VIP:      VIPSettings{Address: "10.4.0.10/24"},
				Service:  ServiceSettings{Runtime: "none"},
				Failover: FailoverSettings{Preferred: "node1", Preempt: false},
			},
			notes:     []string{"nopreempt (and --preempt)", "preempt_delay 1m0s", "failover.hold_down"},
			noteLines: []int{3, 4},
		},
		{
			name: "notify, track_interface, LVS and the rest",
			conf: everythingElse,
			want: Settings{
				VIP:     VIPSettings{Address: "10.5.0.10/32", GARPRepeat: 3, GARPInterval: 100 * time.Millisecond, GARPRefresh: time.Minute},
				Service: ServiceSettings{Runtime: "none"},
				Checks: []Check{{Name: "chk", Kind: "exec", Required: true, Interval: time.Second, Timeout: 800 * time.Millisecond, Rise: 1, Fall: 1,
					Exec: &ExecCheck{Command: []string{"/usr/local/bin/check_newbie.sh"}}}},
				Failover: FailoverSettings{Preferred: "node1"},
				Hooks: []Hook{
					{Name: "notify-master", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/etc/keepalived/to_master.sh"}}},
					{Name: "notify-master-2", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/etc/keepalived/notify.sh", "INSTANCE", "VI_1", "MASTER", "100"}}},
					{Name: "notify-backup", Events: []string{"became-standby"}, Exec: &HookExec{Command: []string{"/etc/keepalived/notify.sh", "INSTANCE", "VI_1", "BACKUP", "100"}}},
					{Name: "notify-fault", Events: []string{"health-changed"}, Exec: &HookExec{Command: []string{"/bin/sh", "-c", `[ "$NEWBIEHA_HEALTHY" = false ] || exit 0; /etc/keepalived/notify.sh "$@"`, "notify", "INSTANCE", "VI_1", "FAULT", "100"}}},
				},
			},
			notes: []string{
				"router_id gpu1", "notification_email", "enable_script_security",
				"user keepalived_script", "vrrp_script unused: not tracked",
				"no prefix", "label eth0:vip", "virtual_ipaddress 10.5.0.11/24: not carried over",
				"track_script missing", "track_interface eth0", "/sys/class/net/eth0/operstate",
				"notify_master /etc/keepalived/to_master.sh: an exec hook on became-holder",
				"notify /etc/keepalived/notify.sh: three exec hooks, each with Keepalived's arguments: INSTANCE VI_1 MASTER 100", "vrrp_instance VI_1: smtp_alert", "virtual_server 10.5.0.10 8080", "load balancing",
			},
			noteLines: []int{2, 3, 7, 11, 13, 24, 25, 29, 32, 34, 35, 36, 38},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.conf))
			if err != nil {
				t.Fatal(err)
			}
			r, err := Convert(cfg, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Settings, c.want) {
				t.Errorf("settings\n got %+v\nwant %+v", r.Settings, c.want)
				for i := range max(len(r.Settings.Checks), len(c.want.Checks)) {
					if i < len(r.Settings.Checks) && i < len(c.want.Checks) && !reflect.DeepEqual(r.Settings.Checks[i], c.want.Checks[i]) {
						t.Errorf("checks[%d]\n got %+v %+v\nwant %+v %+v", i, r.Settings.Checks[i], r.Settings.Checks[i].Exec, c.want.Checks[i], c.want.Checks[i].Exec)
					}
				}
			}
			var all []string
			lines := map[int]bool{}
			for _, n := range r.Notes {
				all = append(all, n.String())
				lines[n.Line] = true
			}
			joined := strings.Join(all, "\n")
			for _, w := range c.notes {
				if !strings.Contains(joined, w) {
					t.Errorf("no note contains %q; notes:\n%s", w, joined)
				}
			}
			for _, w := range c.notNotes {
				if strings.Contains(joined, w) {
					t.Errorf("a note contains %q; notes:\n%s", w, joined)
				}
			}
			for _, l := range c.noteLines {
				if !lines[l] {
					t.Errorf("no note for line %d; notes:\n%s", l, joined)
				}
			}
			out, err := r.YAML("test.conf")
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range r.SortedNotes() {
				if !bytes.Contains(out, []byte(fmt.Sprintf("# %2d. %s\n", i+1, n))) {
					t.Errorf("note %d %q is not a comment of the output", i+1, n)
				}
			}
			// The output is what config apply accepts, field by field.
			s, checks := parseOutput(t, out)
			got := []struct {
				field     string
				got, want any
			}{
				{"vip.address", s.VIP.Address, c.want.VIP.Address},
				{"service.health_url", s.Service.HealthURL, c.want.Service.HealthURL},
				{"service.runtime", s.Service.Runtime, c.want.Service.Runtime},
				{"service.compose_file", s.Service.ComposeFile, c.want.Service.ComposeFile},
				{"service.compose_service", s.Service.ComposeService, c.want.Service.ComposeService},
				{"service.standby", s.Service.Standby, "hot"},
				{"failover.preferred", s.Failover.Preferred, c.want.Failover.Preferred},
				{"failover.preempt", s.Failover.Preempt, c.want.Failover.Preempt},
				{"failover.hold_down", time.Duration(s.Failover.HoldDown), 30 * time.Second},
				{"checks", len(checks), len(c.want.Checks)},
			}
			if c.want.VIP.GARPRepeat != 0 {
				got = append(got, struct {
					field     string
					got, want any
				}{"vip.garp_repeat", s.VIP.GARPRepeat, c.want.VIP.GARPRepeat})
			}
			for _, g := range got {
				if !reflect.DeepEqual(g.got, g.want) {
					t.Errorf("%s = %v, want %v", g.field, g.got, g.want)
				}
			}
			for i, ch := range checks {
				if i >= len(c.want.Checks) {
					break
				}
				w := c.want.Checks[i]
				if ch.Name != w.Name || string(ch.Kind) != w.Kind || ch.Required != w.Required || ch.Interval != w.Interval || ch.Timeout != w.Timeout || ch.Rise != w.Rise || ch.Fall != w.Fall {
					t.Errorf("checks[%d] = %+v, want %+v", i, ch, w)
				}
				if w.Exec != nil && (ch.Exec == nil || !reflect.DeepEqual(ch.Exec.Command, w.Exec.Command)) {
					t.Errorf("checks[%d].exec = %+v, want %v", i, ch.Exec, w.Exec.Command)
				}
			}
		})
	}
}

func TestConvert_Refusals(t *testing.T) {
	cfg, err := Parse([]byte("global_defs {\n router_id x\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(cfg, Options{}); !errors.Is(err, ErrNoInstance) {
		t.Errorf("no instance: err = %v, want ErrNoInstance", err)
	}
	cfg, err = Parse([]byte(weights))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Convert(cfg, Options{CheckScript: []byte("nvidia-smi\n"), CheckScriptName: "other.sh"})
	if err == nil || !strings.Contains(err.Error(), "--check-script other.sh: matches none of the tracked scripts") {
		t.Errorf("unmatched script: err = %v", err)
	}
}

// A script that does more than the usual checks stays required, and each
// line no native check covers is listed.
func TestConvert_PartlyRecognisedScript(t *testing.T) {
	cfg, err := Parse([]byte(readTestdata(t, "seed-keepalived-master.conf")))
	if err != nil {
		t.Fatal(err)
	}
	script := readTestdata(t, "seed-check_newbie.sh") + "mountpoint -q /workspace/models\n"
	r, err := Convert(cfg, Options{CheckScript: []byte(script), CheckScriptName: "check_newbie.sh"})
	if err != nil {
		t.Fatal(err)
	}
	last := r.Settings.Checks[len(r.Settings.Checks)-1]
	if last.Name != "chk_newbie" || !last.Required {
		t.Fatalf("the script's check = %+v, want chk_newbie required", last)
	}
	found := false
	for _, n := range r.Notes {
		found = found || strings.Contains(n.String(), "check_newbie.sh line 17: mountpoint -q /workspace/models: no native check does this")
	}
	if !found {
		t.Fatalf("notes %v do not list the mountpoint line", r.Notes)
	}
}

// A vrrp_script named like a native check, or like the checks the agent
// adds (service for health_url, container for runtime docker), is renamed.
func TestConvert_CheckNamesStayUnique(t *testing.T) {
	conf := `vrrp_script gpu {
    script "/usr/local/bin/check_newbie.sh"
}
vrrp_script service {
    script "/bin/true"
}
vrrp_script container {
    script "/bin/true"
}
vrrp_instance VI_1 {
    state MASTER
    virtual_ipaddress {
        10.6.0.10/24
    }
    track_script {
        gpu
        service
        container
    }
}
`
	cfg, err := Parse([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Convert(cfg, Options{CheckScript: []byte(readTestdata(t, "seed-check_newbie.sh")), CheckScriptName: "check_newbie.sh",
		ComposeFile: "/srv/c.yml", ComposeService: "newbie-image"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range r.Settings.Checks {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, " "), "gpu gpu-2 service-2 container-2"; got != want {
		t.Fatalf("check names %q, want %q", got, want)
	}
	out, err := r.YAML("x.conf")
	if err != nil {
		t.Fatal(err)
	}
	parseOutput(t, out)
}

func TestConvert_RefusesAnUnusableVIP(t *testing.T) {
	cfg, err := Parse([]byte("vrrp_instance VI_1 {\n  virtual_ipaddress {\n    127.0.0.2/8\n  }\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Convert(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "line 3: virtual_ipaddress: 127.0.0.2/8 cannot be newbieha's VIP") {
		t.Fatalf("err = %v", err)
	}
}

// Each notify keyword becomes the exec hook docs/migration.md names, with
// the command Keepalived would run, and the output is settings that
// config apply accepts, hooks included.
func TestConvert_NotifyScriptsBecomeExecHooks(t *testing.T) {
	const head = "vrrp_instance VI_9 {\n    state BACKUP\n    interface eth0\n    priority 90\n    virtual_ipaddress {\n        10.6.0.10/24\n    }\n"
	for _, c := range []struct {
		name, lines string
		want        []Hook
		note        string
	}{
		{"notify_master", "    notify_master /usr/local/bin/master.sh\n",
			[]Hook{{Name: "notify-master", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/usr/local/bin/master.sh"}}}},
			"line 8: notify_master /usr/local/bin/master.sh: an exec hook on became-holder"},
		{"notify_backup with arguments", "    notify_backup \"/usr/local/bin/state.sh backup now\"\n",
			[]Hook{{Name: "notify-backup", Events: []string{"became-standby"}, Exec: &HookExec{Command: []string{"/usr/local/bin/state.sh", "backup", "now"}}}},
			"an exec hook on became-standby"},
		{"notify_master through PATH", "    notify_master \"master.sh --quiet\"\n",
			[]Hook{{Name: "notify-master", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/bin/sh", "-c", `master.sh --quiet "$@"`, "notify"}}}},
			"became-holder"},
		{"notify_master with shell syntax", "    notify_master \"/usr/bin/logger -t ka master && /usr/local/bin/up.sh\"\n",
			[]Hook{{Name: "notify-master", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/bin/sh", "-c", `/usr/bin/logger -t ka master && /usr/local/bin/up.sh "$@"`, "notify"}}}},
			"became-holder"},
		{"notify_fault", "    notify_fault /usr/local/bin/fault.sh\n",
			[]Hook{{Name: "notify-fault", Events: []string{"health-changed"}, Exec: &HookExec{Command: []string{"/bin/sh", "-c", `[ "$NEWBIEHA_HEALTHY" = false ] || exit 0; /usr/local/bin/fault.sh "$@"`, "notify"}}}},
			"run only when the node turns unhealthy"},
		{"notify", "    notify /usr/local/bin/notify.sh\n",
			[]Hook{
				{Name: "notify-master", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/usr/local/bin/notify.sh", "INSTANCE", "VI_9", "MASTER", "90"}}},
				{Name: "notify-backup", Events: []string{"became-standby"}, Exec: &HookExec{Command: []string{"/usr/local/bin/notify.sh", "INSTANCE", "VI_9", "BACKUP", "90"}}},
				{Name: "notify-fault", Events: []string{"health-changed"}, Exec: &HookExec{Command: []string{"/bin/sh", "-c", `[ "$NEWBIEHA_HEALTHY" = false ] || exit 0; /usr/local/bin/notify.sh "$@"`, "notify", "INSTANCE", "VI_9", "FAULT", "90"}}},
			},
			"INSTANCE VI_9 MASTER 90 on became-holder"},
		{"notify_stop", "    notify_stop /usr/local/bin/stop.sh\n", nil,
			"line 8: notify_stop /usr/local/bin/stop.sh: not carried over: newbieha has no event for it"},
		{"two of a kind", "    notify_master /a.sh\n    notify_master /b.sh\n",
			[]Hook{
				{Name: "notify-master", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/a.sh"}}},
				{Name: "notify-master-2", Events: []string{"became-holder"}, Exec: &HookExec{Command: []string{"/b.sh"}}},
			},
			"line 9: notify_master /b.sh"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head + c.lines + "}\n"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := Convert(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Settings.Hooks, c.want) {
				t.Fatalf("hooks\n got %s\nwant %s", hookString(r.Settings.Hooks), hookString(c.want))
			}
			var notes []string
			for _, n := range r.Notes {
				notes = append(notes, n.String())
			}
			if j := strings.Join(notes, "\n"); !strings.Contains(j, c.note) {
				t.Fatalf("no note has %q:\n%s", c.note, j)
			}
			out, err := r.YAML("test.conf")
			if err != nil {
				t.Fatal(err)
			}
			s, _ := parseOutput(t, out)
			if len(s.Hooks) != len(c.want) {
				t.Fatalf("the output has %d hooks, want %d:\n%s", len(s.Hooks), len(c.want), out)
			}
			for i, h := range s.Hooks {
				w := c.want[i]
				if h.Name != w.Name || !reflect.DeepEqual(h.Events, w.Events) || h.Exec == nil || !reflect.DeepEqual(h.Exec.Command, w.Exec.Command) ||
					h.Exec.Retries == nil || *h.Exec.Retries != 0 || h.Webhook != nil {
					t.Fatalf("output hooks[%d] = %+v %+v, want %s\n%s", i, h, h.Exec, hookString([]Hook{w}), out)
				}
			}
		})
	}
}

func hookString(hs []Hook) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "{%s %v %q} ", h.Name, h.Events, h.Exec.Command)
	}
	return b.String()
}
