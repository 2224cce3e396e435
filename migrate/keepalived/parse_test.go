package keepalived

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse_Seed(t *testing.T) {
	src, err := os.ReadFile("testdata/seed-keepalived-master.conf")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	wantScript := &Script{Name: "chk_newbie", Line: 3, Script: "/usr/local/bin/check_newbie.sh", Interval: 5 * time.Second, Weight: 2, WeightSet: true}
	if len(cfg.Scripts) != 1 || !reflect.DeepEqual(cfg.Scripts[0], wantScript) {
		t.Fatalf("scripts = %+v, want %+v", cfg.Scripts, wantScript)
	}
	if len(cfg.Instances) != 1 {
		t.Fatalf("instances = %d, want 1", len(cfg.Instances))
	}
	in := cfg.Instances[0]
	checks := []struct {
		field     string
		got, want any
	}{
		{"name", in.Name, "VI_1"},
		{"line", in.Line, 9},
		{"state", in.State, "MASTER"},
		{"interface", in.Interface, "eth0"},
		{"interface line", in.InterfaceLine, 11},
		{"virtual_router_id", in.VirtualRouterID, 51},
		{"priority", in.Priority, 100},
		{"advert_int", in.AdvertInt, time.Second},
		{"nopreempt", in.NoPreempt, false},
		{"auth_type", in.AuthType, "PASS"},
		{"auth_pass", in.AuthPass, "your_secure_password"},
		{"auth line", in.AuthLine, 15},
		{"vips", in.VIPs, []VIP{{Line: 20, Prefix: netip.MustParsePrefix("192.168.1.100/24"), HasPrefix: true}}},
		{"track_script", in.TrackScripts, []Track{{Line: 23, Name: "chk_newbie"}}},
		{"unmodelled", len(cfg.Other), 0},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

// The grammar beyond the seed: both comment characters, quoted strings
// with blanks, braces touching words or on their own line, one-line blocks,
// VIP options, weights, unknown keywords and blocks kept.
func TestParse_Grammar(t *testing.T) {
	src := `! a comment
global_defs {   # trailing comment
   router_id gpu1
   vrrp_garp_master_repeat 3
}
vrrp_script "chk one" {
    script "/bin/sh -c 'curl -f http://127.0.0.1/ready'"
    interval 2.5
    timeout 2
    rise 3
    fall 2
    user nobody nogroup
    init_fail
}
vrrp_instance VI_1
{
    state BACKUP
    interface ens3
    virtual_router_id 7
    nopreempt
    preempt_delay 10
    unicast_src_ip 10.0.0.2
    unicast_peer {
        10.0.0.1
    }
    virtual_ipaddress {
        10.0.0.100/24 dev ens4 label ens4:vip
        10.0.0.101
    }
    track_script {"chk one" weight -30}
    track_interface {
        ens3 weight 10
    }
    notify_master "/etc/keepalived/master.sh arg"
    smtp_alert
}
virtual_server 10.0.0.100 80 {
    real_server 10.0.0.1 80 {
        weight 1
    }
}
`
	cfg, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Scripts[0]
	if sc.Name != "chk one" || sc.Script != "/bin/sh -c 'curl -f http://127.0.0.1/ready'" || sc.Interval != 2500*time.Millisecond ||
		sc.Timeout != 2*time.Second || sc.Rise != 3 || sc.Fall != 2 || sc.User != "nobody nogroup" || sc.UserLine != 12 {
		t.Errorf("script = %+v", sc)
	}
	in := cfg.Instances[0]
	if in.State != "BACKUP" || !in.NoPreempt || in.NoPreemptLine != 20 || in.PreemptDelay != 10*time.Second ||
		in.UnicastSrcIP != netip.MustParseAddr("10.0.0.2") || !reflect.DeepEqual(in.UnicastPeers, []netip.Addr{netip.MustParseAddr("10.0.0.1")}) {
		t.Errorf("instance = %+v", in)
	}
	wantVIPs := []VIP{
		{Line: 27, Prefix: netip.MustParsePrefix("10.0.0.100/24"), HasPrefix: true, Dev: "ens4", Label: "ens4:vip"},
		{Line: 28, Prefix: netip.MustParsePrefix("10.0.0.101/32")},
	}
	if !reflect.DeepEqual(in.VIPs, wantVIPs) {
		t.Errorf("vips = %+v, want %+v", in.VIPs, wantVIPs)
	}
	if want := []Track{{Line: 30, Name: "chk one", Weight: -30, WeightSet: true}}; !reflect.DeepEqual(in.TrackScripts, want) {
		t.Errorf("track_script = %+v, want %+v", in.TrackScripts, want)
	}
	if want := []Track{{Line: 32, Name: "ens3", Weight: 10, WeightSet: true}}; !reflect.DeepEqual(in.TrackInterfaces, want) {
		t.Errorf("track_interface = %+v, want %+v", in.TrackInterfaces, want)
	}
	if len(in.Notify) != 1 || in.Notify[0].Args[0] != "/etc/keepalived/master.sh arg" {
		t.Errorf("notify = %+v", in.Notify)
	}
	var other []string
	for _, u := range cfg.Other {
		other = append(other, u.Where+"|"+u.Stmt.Keyword)
	}
	if want := []string{`vrrp_script chk one|init_fail`, "vrrp_instance VI_1|smtp_alert", "|virtual_server"}; !reflect.DeepEqual(other, want) {
		t.Errorf("unmodelled = %q, want %q", other, want)
	}
	if len(cfg.Global) != 2 || cfg.GlobalLine != 2 {
		t.Errorf("global_defs = %d statements at line %d", len(cfg.Global), cfg.GlobalLine)
	}
}

// Errors name the line and, where there is one, the keyword.
func TestParse_Errors(t *testing.T) {
	cases := []struct {
		name, src string
		want      string
	}{
		{"include", "global_defs {\n}\ninclude /etc/keepalived/conf.d/*.conf\n", `line 3: include: "/etc/keepalived/conf.d/*.conf" is not read`},
		{"include inside a block", "vrrp_instance VI_1 {\n  include vips.conf\n}\n", "line 2: include:"},
		{"prose", "vrrp_instance VI_1 {\n}\nthis is not a keepalived file\n", `line 3: this: not a Keepalived statement`},
		{"unclosed block", "vrrp_instance VI_1 {\n  state MASTER\n  virtual_ipaddress {\n    10.0.0.1/24\n}\n", "line 1: vrrp_instance: the block opened here is never closed"},
		{"stray close", "vrrp_instance VI_1 {\n}\n}\n", "line 3: } closes no block"},
		{"brace without keyword", "{\n}\n", "line 1: { with no keyword"},
		{"unterminated quote", "vrrp_script c {\n  script \"/bin/check\n}\n", "line 2: quoted string not closed"},
		{"bad priority", "vrrp_instance VI_1 {\n  priority high\n}\n", `line 2: priority: "high": want a whole number 1-255`},
		{"priority out of range", "vrrp_instance VI_1 {\n  priority 300\n}\n", `line 2: priority: "300"`},
		{"bad state", "vrrp_instance VI_1 {\n  state PRIMARY\n}\n", `line 2: state: "PRIMARY": want MASTER or BACKUP`},
		{"bad vip", "vrrp_instance VI_1 {\n virtual_ipaddress {\n  10.0.0/24\n }\n}\n", `line 3: virtual_ipaddress: "10.0.0/24" is not ADDRESS/PREFIX`},
		{"bad peer", "vrrp_instance VI_1 {\n unicast_peer {\n  gpu2\n }\n}\n", `line 3: unicast_peer: "gpu2" is not an IP address`},
		{"bad interval", "vrrp_script c {\n script /x\n interval soon\n}\n", `line 3: interval: "soon": want seconds`},
		{"script without script", "vrrp_script c {\n interval 2\n}\n", "line 1: vrrp_script: c has no script line"},
		{"instance without name", "vrrp_instance {\n}\n", "line 1: vrrp_instance: needs exactly one name"},
		{"value with a block", "vrrp_instance VI_1 {\n priority { 1 }\n}\n", "line 2: priority: takes a value, not a { } block"},
		{"binary", "vrrp_instance VI_1 {\n\x00\x01\x02\n}\n", "line 2: "},
		{"conditional", "@gpu1 vrrp_instance VI_1 {\n}\n", "line 1: @gpu1: conditional configuration"},
		{"definition", "$VIP=10.0.0.1\n", "line 1: $VIP=10.0.0.1: parameter substitution"},
		{"bad weight", "vrrp_instance VI_1 {\n track_script {\n  chk weight heavy\n }\n}\n", `line 3: track_script: weight "heavy"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line == 0 {
				t.Fatalf("err %v is not a *SyntaxError with a line", err)
			}
			if strings.HasPrefix(c.name, "include") != errors.Is(err, ErrInclude) {
				t.Fatalf("errors.Is(err, ErrInclude) = %v", errors.Is(err, ErrInclude))
			}
		})
	}
}

func TestRecogniseScript(t *testing.T) {
	seed, err := os.ReadFile("testdata/seed-check_newbie.sh")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		src  string
		want CheckScript
	}{
		{"seed", string(seed), CheckScript{Container: "newbie-image", ContainerLine: 4, URL: "http://localhost:8080/health", ExpectStatus: 200, HTTPLine: 8, GPU: true, GPULine: 12}},
		{"one-liners", "#!/bin/sh\nset -e\ndocker ps --filter name=model --filter status=running -q | grep -q .\ncurl -fsS --max-time 2 http://127.0.0.1:9000/healthz >/dev/null || exit 1\nnvidia-smi -L\n",
			CheckScript{Container: "model", ContainerLine: 3, URL: "http://127.0.0.1:9000/healthz", ExpectStatus: 200, HTTPLine: 4, GPU: true, GPULine: 5}},
		{"wget and a status", "code=$(wget -q -S -O /dev/null http://10.0.0.5:8000/ping 2>&1 | awk '/HTTP/{print $2}')\n[ \"$code\" = 204 ] || exit 1\n",
			CheckScript{URL: "http://10.0.0.5:8000/ping", ExpectStatus: 204, HTTPLine: 1}},
		{"something else too", "docker container inspect -f '{{.State.Status}}' web | grep -q running\nmountpoint -q /models || exit 1\n",
			CheckScript{Container: "web", ContainerLine: 1, Unrecognised: []ScriptLine{{Line: 2, Text: "mountpoint -q /models || exit 1"}}}},
		{"commented out", "# curl http://x/health\n# nvidia-smi\nexit 0\n", CheckScript{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := RecogniseScript([]byte(c.src))
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
	if !RecogniseScript(seed).Complete() {
		t.Error("the seed script is not recognised completely")
	}
}
