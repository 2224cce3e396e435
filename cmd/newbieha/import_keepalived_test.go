package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/cluster"
)

const keepalivedTestdata = "../../migrate/keepalived/testdata/"

// importChecks reads a converted file as init and config apply do, and
// returns the checks the agent would run, as "kind:name:required".
func importChecks(t *testing.T, out []byte) (cluster.Settings, []string) {
	t.Helper()
	s, err := cluster.ParseSettings(out)
	if err != nil {
		t.Fatalf("ParseSettings: %v\n%s", err, out)
	}
	if err := validateSettings(s); err != nil {
		t.Fatalf("validateSettings: %v\n%s", err, out)
	}
	cfg, err := checksOf(s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cfg.Checks {
		req := "info"
		if c.Required {
			req = "required"
		}
		got = append(got, string(c.Kind)+":"+c.Name+":"+req)
	}
	return s, got
}

// The seed's files (keepalived.conf of the master, its check script, the
// compose file) become settings the agent accepts: the compose service is
// the workload, the script's checks are native and the script informational.
func TestImportKeepalived_SeedFiles(t *testing.T) {
	dir := t.TempDir()
	compose := filepath.Join(dir, "docker-compose.yml")
	b, err := os.ReadFile(keepalivedTestdata + "seed-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(compose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dir, "cluster.yaml")
	stdout, stderr, err := runOut(t, "import", "keepalived", keepalivedTestdata+"seed-keepalived-master.conf",
		"--check-script", keepalivedTestdata+"seed-check_newbie.sh", "--compose", compose, "-o", outFile)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout with -o: %q", stdout)
	}
	out, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	s, checks := importChecks(t, out)
	want := []struct{ field, got, want string }{
		{"vip.address", s.VIP.Address, "192.168.1.100/24"},
		{"service.runtime", s.Service.Runtime, "docker"},
		{"service.compose_file", s.Service.ComposeFile, compose},
		{"service.compose_service", s.Service.ComposeService, "newbie-image"},
		{"service.health_url", s.Service.HealthURL, "http://localhost:8080/health"},
		{"failover.preferred", s.Failover.Preferred, "node1"},
		{"checks", strings.Join(checks, " "), "gpu:gpu:required exec:chk_newbie:info http:service:required container:container:required"},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s = %q, want %q", w.field, w.got, w.want)
		}
	}
	if s.Failover.Preempt {
		t.Error("failover.preempt on without --preempt")
	}
	for _, w := range []string{"Converted vrrp_instance VI_1", " 1. line 3:", "auth_pass", "vip_interface: eth0", "Wrote " + outFile} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(string(out)+stderr, "your_secure_password") {
		t.Error("the VRRP password was copied")
	}
}

// Without -o the settings go to stdout and the notes to stderr; the backup's
// file names the MASTER as preferred; without --compose the container is
// checked by an exec check (the native one needs runtime docker).
func TestImportKeepalived_BackupToStdout(t *testing.T) {
	stdout, stderr, err := runOut(t, "import", "keepalived", keepalivedTestdata+"seed-keepalived-backup.conf",
		"--check-script", keepalivedTestdata+"seed-check_newbie.sh", "--preempt")
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	s, checks := importChecks(t, []byte(stdout))
	if got, want := strings.Join(checks, " "), "exec:container:required gpu:gpu:required exec:chk_newbie:info http:service:required"; got != want {
		t.Errorf("checks = %q, want %q", got, want)
	}
	if s.Service.Runtime != "none" || s.Failover.Preferred != "node1" || !s.Failover.Preempt {
		t.Errorf("service %+v failover %+v", s.Service, s.Failover)
	}
	if !strings.Contains(stderr, "the MASTER this file is the backup of") || !strings.HasPrefix(stdout, "# Cluster settings converted") {
		t.Errorf("stderr:\n%s\nstdout:\n%s", stderr, stdout)
	}
}

func TestImportKeepalived_Refusals(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(inc, []byte("global_defs {\n}\ninclude /etc/keepalived/vrrp.conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{inc}, "line 3: include:"},
		{[]string{keepalivedTestdata + "seed-check_newbie.sh"}, "seed-check_newbie.sh: line 4: "},
		{[]string{keepalivedTestdata + "seed-keepalived-master.conf", "--node-name-for", "gpu1"}, `--node-name-for "gpu1": want IP=NAME`},
		{[]string{keepalivedTestdata + "seed-keepalived-master.conf", "--compose", keepalivedTestdata + "seed-compose.yml", "--compose-service", "web"}, `no service "web"`},
	}
	for _, c := range cases {
		_, _, err := runOut(t, append([]string{"import", "keepalived"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
	}
}
