//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The service container's side of the link the lab gives it, and the
// lab host's side: the same on every host, each in its own namespace.
const (
	labSvcIP   = "169.254.80.2"
	labSvcPeer = "169.254.80.1"
)

// dockerService makes the lab's GPU nodes run the stub model server as a
// container through newbieha's Docker runtime (service.runtime docker, a
// compose file), on the one Docker Engine of this machine, and returns the
// settings' service section.
//
// A container's network namespace is Docker's, not the lab host's, so the
// lab plumbs each container into its host as a CNI plugin would: the
// container has no network of Docker's (network_mode none); whenever one
// starts (docker events), a veth pair links it to its lab host
// (labSvcIP in the container, labSvcPeer on the host), and the host
// forwards VIP:8080 to it (nftables DNAT), as a published port is on a
// real host. A stopped container takes its end of the link with it, so
// requests fail at once, as on a host whose service died; a paused one
// keeps it and never answers. Each agent names its container through the
// compose file's ${NBHA_LAB_CONTAINER}: both nodes share one daemon here.
// The containers are removed once the lab's processes are gone.
func (f *failoverLab) dockerService(image string) string {
	t := f.t
	t.Helper()
	if err := exec.Command("docker", "image", "inspect", image).Run(); err != nil {
		t.Skipf("needs the stub image %s in the local Docker Engine (make stub-image): %v", image, err)
	}
	label := "nbha.lab=" + f.id
	compose := filepath.Join(f.dir, "compose.yaml")
	if err := os.WriteFile(compose, []byte(`services:
  model:
    image: `+image+`
    container_name: ${NBHA_LAB_CONTAINER:-nbha-lab-unset}
    network_mode: none
    environment:
      NODE_NAME: ${NBHA_LAB_NODE:-unset}
    labels:
      nbha.lab: "`+f.id+`"
    pull_policy: never
    stop_grace_period: 2s
`), 0o600); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*host{}
	for _, h := range []*host{f.n1, f.n2} {
		name := "nbha" + f.id + "-svc-" + h.name
		byName[name] = h
		h.env = append(h.env, "NBHA_LAB_CONTAINER="+name, "NBHA_LAB_NODE="+h.name)
		// VIP:8080 goes to the container, as a published port would.
		nft := fmt.Sprintf("table ip nbha_lab {\n  chain pre {\n    type nat hook prerouting priority -100; policy accept;\n    ip daddr %s tcp dport 8080 dnat to %s:8080\n  }\n}\n", f.vip, labSvcIP)
		cmd := exec.Command("ip", "netns", "exec", h.ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(nft)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft on %s: %v\n%s", h.name, err, out)
		}
		run(t, "ip", "netns", "exec", h.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	f.after = append(f.after, func() {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+label).Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "rm", "-f", id).Run()
		}
	})

	// The watcher: one `docker events` for the lab's containers.
	ctx, cancel := context.WithCancel(context.Background())
	ev := exec.CommandContext(ctx, "docker", "events", "--filter", "label="+label, "--filter", "event=start", "--format", "{{.Actor.Attributes.name}}")
	stdout, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		cancel()
		t.Fatalf("docker events: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h := byName[strings.TrimSpace(sc.Text())]
			if h == nil {
				continue
			}
			if err := plumb(h, strings.TrimSpace(sc.Text())); err != nil {
				fmt.Fprintf(os.Stderr, "lab: plumbing %s's container: %v\n", h.name, err)
			}
		}
	}()
	// Stopped before the containers go (after), after the agents.
	f.after = append(f.after, func() { cancel(); _ = ev.Wait(); wg.Wait() })
	return "  health_url: http://" + labSvcIP + ":8080/health\n  runtime: docker\n  standby: hot\n  compose_file: " + compose + "\n  compose_service: model\n"
}

// plumb links a container that has just started to its lab host.
func plumb(h *host, container string) error {
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", container).Output()
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	pid := strings.TrimSpace(string(out))
	if pid == "" || pid == "0" {
		return fmt.Errorf("not running (pid %q)", pid)
	}
	hostEnd := "s" + strings.TrimPrefix(h.hostIf, "n")
	steps := [][]string{
		// A link left from the container's previous run went with its
		// namespace; one that did not is replaced.
		{"ip", "-n", h.ns, "link", "del", hostEnd},
		{"ip", "link", "add", hostEnd, "netns", h.ns, "type", "veth", "peer", "name", "eth0", "netns", pid},
		{"ip", "-n", h.ns, "addr", "add", labSvcPeer + "/30", "dev", hostEnd},
		{"ip", "-n", h.ns, "link", "set", hostEnd, "up"},
		{"nsenter", "-t", pid, "-n", "ip", "addr", "add", labSvcIP + "/30", "dev", "eth0"},
		{"nsenter", "-t", pid, "-n", "ip", "link", "set", "eth0", "up"},
		{"nsenter", "-t", pid, "-n", "ip", "route", "add", "default", "via", labSvcPeer},
	}
	for i, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil && i > 0 {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// containerOf is the Docker state of h's service container ("running",
// "paused", "exited"), from the daemon itself.
func (f *failoverLab) containerOf(h *host) string {
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Status}}", "nbha"+f.id+"-svc-"+h.name).Output()
	if err != nil {
		return "absent"
	}
	return strings.TrimSpace(string(out))
}

// The shipped runbooks that take the service container down run in the
// lab with the service in Docker, driven by the agents' runtime:
// service-dies (the container stopped, kept stopped by the reconciler's
// hold although the reconciler would start it within 5 s, started again
// at the fault's end) and service-hangs (paused, unpaused at its end).
// Each passes, and its figures agree with the independent client's.
func TestDrill_ServiceRunbooksInDocker(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("needs a Docker Engine: %v", err)
	}
	image := os.Getenv("NEWBIEHA_STUB_IMAGE")
	if image == "" {
		image = "newbieha/stub-model:dev"
	}
	f := newFailoverLabOpts(t, labOptions{
		extra:   "failover:\n  hold_down: 1s\n",
		service: func(f *failoverLab) string { return f.dockerService(image) },
	})
	certDir := filepath.Join(t.TempDir(), "op")
	f.mustCLI(f.n1, "operator", "cert", "--name", "drill-op", "--ttl", "1h", "--out", certDir, "--data-dir", f.n1.dataDir)
	viaN := func(h *host) []string { return []string{"--server", h.ip + ":7700", "--cert-dir", certDir} }
	for _, h := range []*host{f.n1, f.n2} {
		if st := f.containerOf(h); st != "running" {
			t.Fatalf("%s's container is %s", h.name, st)
		}
	}

	// service-dies: node1's container is stopped and stays stopped for the
	// fault's 30 s (the reconciler, every 5 s, would start it within 5 s),
	// node2 takes over; at the fault's end it runs again.
	stopWatch := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	go func() {
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tk.C:
				s := f.containerOf(f.n1)
				mu.Lock()
				if len(seen) == 0 || seen[len(seen)-1] != s {
					seen = append(seen, s)
				}
				mu.Unlock()
			}
		}
	}()
	rep := f.runChecked(drillCase{runbook: "../docs/runbooks/service-dies.yaml", on: f.w, via: viaN(f.w), from: "node1", to: "node2", client: 50 * time.Second, limit: 150 * time.Second})
	close(stopWatch)
	mu.Lock()
	states := strings.Join(seen, " → ")
	mu.Unlock()
	t.Logf("node1's container during service-dies: %s", states)
	if !strings.Contains(states, "exited") || !strings.HasSuffix(states, "running") || strings.Count(states, "exited") != 1 {
		t.Errorf("node1's container went %s, want running → exited (held for the fault) → running", states)
	}
	if d := rep.End.Sub(rep.Start); d < 30*time.Second {
		t.Errorf("the drill took %v, less than its fault", d)
	}

	// service-hangs: node2's container is paused; node1 takes over; at the
	// fault's end it is unpaused.
	f.runChecked(drillCase{runbook: "../docs/runbooks/service-hangs.yaml", on: f.w, via: viaN(f.w), from: "node2", to: "node1", client: 50 * time.Second, limit: 150 * time.Second})
	waitFor(t, 15*time.Second, "node2's container running again", func() error {
		if st := f.containerOf(f.n2); st != "running" {
			return fmt.Errorf("it is %s", st)
		}
		return nil
	})
}
