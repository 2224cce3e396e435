package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodConfig = `name: node1
role: gpu
advertise: 10.0.0.1
ports: {api: 7700, raft: 7701, gossip: 7702}
`

func TestParseNodeConfig_Good(t *testing.T) {
	cfg, err := ParseNodeConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "node1" || cfg.Role != "gpu" || cfg.RaftAddr() != "10.0.0.1:7701" || cfg.Raft != DefaultRaftTimings() {
		t.Fatalf("unexpected config %+v", cfg)
	}
}

func TestParseNodeConfig_BadConfigsNameTheKey(t *testing.T) {
	cases := []struct {
		name, doc, key string
	}{
		{"unknown top key", goodConfig + "colour: blue\n", `"colour"`},
		{"unknown nested key", goodConfig + "raft:\n  heartbeat: 1s\n", `"heartbeat"`},
		{"missing name", "role: gpu\nadvertise: 10.0.0.1\n", `"name"`},
		{"bad name", strings.Replace(goodConfig, "node1", "Node_1", 1), `"name"`},
		{"bad role", strings.Replace(goodConfig, "role: gpu", "role: cpu", 1), `"role"`},
		{"missing advertise", "name: n\nrole: gpu\n", `"advertise"`},
		{"bad advertise", strings.Replace(goodConfig, "10.0.0.1", "10.0.0.300", 1), `"advertise"`},
		{"unspecified advertise", strings.Replace(goodConfig, "10.0.0.1", "0.0.0.0", 1), `"advertise"`},
		{"bad bind", goodConfig + "bind: nowhere\n", `"bind"`},
		{"port out of range", strings.Replace(goodConfig, "api: 7700", "api: 70000", 1), `"ports.api"`},
		{"port not a number", strings.Replace(goodConfig, "raft: 7701", "raft: seven", 1), `"ports.raft"`},
		{"ports collide", strings.Replace(goodConfig, "gossip: 7702", "gossip: 7701", 1), `"ports"`},
		{"bad duration", goodConfig + "raft:\n  election_timeout: soon\n", `"raft.election_timeout"`},
		{"lease above heartbeat", goodConfig + "raft:\n  leader_lease_timeout: 2s\n", `"raft.leader_lease_timeout"`},
		{"heartbeat above election", goodConfig + "raft:\n  heartbeat_timeout: 900ms\n  election_timeout: 600ms\n", `"raft.heartbeat_timeout"`},
		{"tiny timeout", goodConfig + "raft:\n  commit_timeout: 1ms\n", `"raft.commit_timeout"`},
		{"bad join", goodConfig + "join: [10.0.0.2]\n", `"join[0]"`},
		{"bad log level", goodConfig + "log_level: loud\n", `"log_level"`},
		{"bad log format", goodConfig + "log_format: xml\n", `"log_format": "xml" is not text or json`},
		{"web without metrics_addr", goodConfig + "web: true\n", `"web": the page is served on metrics_addr, which is not set`},
		{"web_operator_cert without web", goodConfig + "metrics_addr: 127.0.0.1:7703\nweb_operator_cert: true\n", `"web_operator_cert": set web: true too`},
		{"empty", "", `"name"`},
		{"not yaml", "name: [unclosed\n", "YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNodeConfig([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name %s", err, tc.key)
			}
		})
	}
}

func TestLoadNodeConfig_NamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), ConfigFileName)
	if err := os.WriteFile(p, []byte(goodConfig+"extra: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadNodeConfig(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `"extra"`) {
		t.Fatalf("err = %v, want file and key named", err)
	}
}

func TestWriteNodeConfig_RoundTripAndMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), ConfigFileName)
	cfg, err := ParseNodeConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Join = []string{"10.0.0.2:7700"}
	if err := WriteNodeConfig(p, cfg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadNodeConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != cfg.Name || got.Join[0] != cfg.Join[0] || got.Raft != cfg.Raft {
		t.Fatalf("round trip: got %+v want %+v", got, cfg)
	}
}
