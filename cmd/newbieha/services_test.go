package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/newbieha/newbieha/internal/logging"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
)

// stubImage makes sure the stub model image exists, building it with the
// docker CLI when it does not (make test builds it first).
func stubImage(t *testing.T) string {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("needs a Docker Engine: %v", err)
	}
	img := os.Getenv("NEWBIEHA_STUB_IMAGE")
	if img == "" {
		img = "newbieha/stub-model:dev"
	}
	if exec.Command("docker", "image", "inspect", img).Run() == nil {
		return img
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "stub-model"), "../stub-model")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build stub: %v\n%s", err, out)
	}
	if out, err := exec.Command("docker", "build", "-q", "-t", img, "-f", "../stub-model/Dockerfile", dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	return img
}

func inspect(t *testing.T, name string) (id, started string, running bool) {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}} {{.State.Running}}", name).Output()
	if err != nil {
		return "", "", false
	}
	f := strings.Fields(string(out))
	return f[0], f[1], f[2] == "true"
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}

// The agent's wiring of the runtime: the settings start the container on
// the active node, a restarted agent adopts it, cold standby stops it.
func TestServices_RunAdoptAndColdStandby(t *testing.T) {
	img := stubImage(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "nbha-test-svc-" + hex.EncodeToString(b)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })

	s := cluster.DefaultSettings()
	s.Service = cluster.ServiceSettings{Runtime: "docker", Standby: "cold", Container: map[string]any{"name": name, "image": img}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := validateSettings(s); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := logging.Discard()
	dataDir := t.TempDir()

	v := newServices(ctx, dataDir, "node1", log)
	v.SetActive(true)
	v.OnSettings(s)
	var id, started string
	waitFor(t, 60*time.Second, "the container to run", func() error {
		var running bool
		id, started, running = inspect(t, name)
		if !running {
			return fmt.Errorf("not running")
		}
		return nil
	})
	if ok, why := v.Healthy(); !ok && !strings.Contains(why, "container") {
		t.Fatalf("unexpected verdict %v %q", ok, why)
	}
	v.Close()

	// A restarted agent adopts the running container: same ID, same start.
	v2 := newServices(ctx, dataDir, "node1", log)
	defer v2.Close()
	v2.SetActive(true)
	v2.OnSettings(s)
	waitFor(t, 30*time.Second, "the new agent to see the container", func() error {
		w, _ := v2.Detail().(map[string]any)["workload"]
		if w == nil || !strings.Contains(fmt.Sprintf("%+v", w), "Running:true") {
			return fmt.Errorf("workload %+v", w)
		}
		return nil
	})
	id2, started2, running := inspect(t, name)
	if id2 != id || started2 != started || !running {
		t.Fatalf("container restarted or replaced: %s@%s -> %s@%s running=%v", id, started, id2, started2, running)
	}

	// Cold standby: no longer active, the container stops.
	v2.SetActive(false)
	waitFor(t, 60*time.Second, "the container to stop", func() error {
		if _, _, running := inspect(t, name); running {
			return fmt.Errorf("still running")
		}
		return nil
	})
}
