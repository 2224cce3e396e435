package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

func TestMetricsAddr_CheckedThenWrittenToTheNodeConfig(t *testing.T) {
	for _, bad := range []string{"7703", "localhost:7703", ":7703", "127.0.0.1"} {
		if err := checkMetricsAddr(metricsOpts{addr: bad}); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
			t.Errorf("checkMetricsAddr(%q) = %v, want an error naming the flag", bad, err)
		}
	}
	if err := checkMetricsAddr(metricsOpts{}); err != nil {
		t.Errorf("an empty --metrics-addr is refused: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, cluster.ConfigFileName)
	nc := cluster.DefaultNodeConfig()
	nc.Name, nc.Role, nc.Advertise = "node1", fsm.RoleGPU, "127.0.0.1"
	if err := cluster.WriteNodeConfig(path, nc); err != nil {
		t.Fatal(err)
	}
	if err := writeMetricsAddr(dir, metricsOpts{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cluster.LoadNodeConfig(path); got.MetricsAddr != "" {
		t.Fatalf("metrics_addr %q without the flag", got.MetricsAddr)
	}
	if err := checkMetricsAddr(metricsOpts{web: true}); err == nil || !strings.Contains(err.Error(), "--web needs --metrics-addr") {
		t.Errorf("--web without --metrics-addr: %v", err)
	}
	if err := writeMetricsAddr(dir, metricsOpts{addr: "127.0.0.1:7703", web: true}); err != nil {
		t.Fatal(err)
	}
	got, err := cluster.LoadNodeConfig(path)
	if err != nil || got.MetricsAddr != "127.0.0.1:7703" || !got.Web || got.Name != "node1" {
		t.Fatalf("after --metrics-addr: %+v, %v", got, err)
	}
	if err := writeMetricsAddr(t.TempDir(), metricsOpts{addr: "127.0.0.1:7703"}); err == nil || !strings.Contains(err.Error(), "by hand") {
		t.Fatalf("no node config: %v", err)
	}
}

func TestMetricsAddr_FlagOnInitAndJoin(t *testing.T) {
	for _, f := range []string{"metrics-addr", "web"} {
		if newInitCmd().Flags().Lookup(f) == nil || newJoinCmd().Flags().Lookup(f) == nil {
			t.Fatalf("init or join has no --%s", f)
		}
	}
}
