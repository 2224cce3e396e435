package runtime

// Tests against the real Docker Engine of this machine. They skip only when
// no daemon answers; each removes what it created, also on failure.

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestDocker_Lifecycle(t *testing.T) {
	e := newTestEnv(t)
	d := e.driver("node1")
	ctx := ctxT(t, 2*time.Minute)

	spec, port := e.spec("node1")
	bindDir := t.TempDir()
	vol := uniqueName(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.cli.VolumeRemove(ctx, vol, true); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove volume %s: %v", vol, err)
		}
	})
	spec.Mounts = []Mount{
		{Type: MountBind, Source: bindDir, Target: "/models", ReadOnly: true},
		{Type: MountVolume, Source: vol, Target: "/output"},
	}
	spec.RestartPolicy = RestartPolicy{Name: "on-failure", MaxRetries: 2}
	spec.ShmSize = 64 << 20
	spec.Ulimits = []Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}
	spec.Labels = map[string]string{"app": "stub", labelTest: e.cluster}

	st, err := d.Ensure(ctx, spec, Running)
	if err != nil {
		t.Fatalf("Ensure(running): %v", err)
	}
	if !st.Exists || !st.Running || st.Status != "running" || st.ContainerID == "" || st.StartedAt.IsZero() {
		t.Fatalf("state after start: %+v", st)
	}
	if st.Name != spec.Name || st.Image != spec.Image || st.SpecHash != spec.Hash() {
		t.Fatalf("state identity: %+v", st)
	}

	// The service answers on the published loopback port.
	waitFor(t, 20*time.Second, "stub /health on the published port", func() bool {
		by, err := getServedBy(port)
		return err == nil && by == "node1"
	})

	// The created HostConfig carries the spec.
	info := e.inspectRaw(st.ContainerID)
	hc := info.HostConfig
	pb := hc.PortBindings["8080/tcp"]
	if len(pb) != 1 || pb[0].HostIP != "127.0.0.1" || pb[0].HostPort != strconv.Itoa(port) {
		t.Errorf("port bindings %+v", hc.PortBindings)
	}
	wantBinds := []string{bindDir + ":/models:ro", vol + ":/output"}
	if !reflect.DeepEqual(hc.Binds, wantBinds) {
		t.Errorf("binds %v, want %v", hc.Binds, wantBinds)
	}
	if hc.RestartPolicy.Name != "on-failure" || hc.RestartPolicy.MaximumRetryCount != 2 {
		t.Errorf("restart policy %+v", hc.RestartPolicy)
	}
	if hc.ShmSize != 64<<20 {
		t.Errorf("shm size %d", hc.ShmSize)
	}
	if len(hc.Ulimits) != 1 || hc.Ulimits[0].Name != "nofile" || hc.Ulimits[0].Soft != 1024 || hc.Ulimits[0].Hard != 2048 {
		t.Errorf("ulimits %+v", hc.Ulimits)
	}
	wantLabels := map[string]string{
		"app": "stub", labelTest: e.cluster,
		LabelManaged: "true", LabelCluster: e.cluster, LabelNode: "node1", LabelSpecHash: spec.Hash(),
	}
	for k, v := range wantLabels {
		if got := info.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	if info.Config.StopTimeout == nil || *info.Config.StopTimeout != 5 {
		t.Errorf("stop timeout %v", info.Config.StopTimeout)
	}
	if !containsStr(info.Config.Env, "NODE_NAME=node1") {
		t.Errorf("env %v", info.Config.Env)
	}

	// The image's HEALTHCHECK shows up in the state.
	waitFor(t, 30*time.Second, "docker health status healthy", func() bool {
		st, err := d.Inspect(ctx)
		return err == nil && st.Health == "healthy"
	})

	// Ensure again: nothing changes.
	st2, err := d.Ensure(ctx, spec, Running)
	if err != nil || st2.ContainerID != st.ContainerID || !st2.StartedAt.Equal(st.StartedAt) {
		t.Fatalf("second Ensure changed the container: %+v, %v", st2, err)
	}

	// Stop: graceful (the stub exits 0 on SIGTERM), container kept.
	st, err = d.Ensure(ctx, spec, Stopped)
	if err != nil {
		t.Fatalf("Ensure(stopped): %v", err)
	}
	if !st.Exists || st.Running || st.Status != "exited" || st.ExitCode != 0 || st.ContainerID != st2.ContainerID {
		t.Fatalf("state after stop: %+v", st)
	}
	// Start again: the same container.
	st, err = d.Ensure(ctx, spec, Running)
	if err != nil || !st.Running || st.ContainerID != st2.ContainerID {
		t.Fatalf("restart: %+v, %v", st, err)
	}

	if err := d.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	st, err = d.Inspect(ctx)
	if err != nil || st.Exists || st.Status != StatusAbsent {
		t.Fatalf("Inspect after Remove: %+v, %v", st, err)
	}
	if _, err := e.cli.ContainerInspect(ctx, st2.ContainerID); !errdefs.IsNotFound(err) {
		t.Fatalf("container still there after Remove: %v", err)
	}
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestDocker_GPURequest: the created container carries the device request;
// starting it fails clearly on this host, which has no NVIDIA runtime.
func TestDocker_GPURequest(t *testing.T) {
	e := newTestEnv(t)
	d := e.driver("node1")
	ctx := ctxT(t, time.Minute)

	for _, c := range []struct {
		name string
		gpus GPURequest
		want container.DeviceRequest
	}{
		{"all", GPURequest{All: true}, container.DeviceRequest{Driver: "nvidia", Count: -1, Capabilities: [][]string{{"gpu"}}}},
		{"ids", GPURequest{DeviceIDs: []string{"0", "GPU-1234"}}, container.DeviceRequest{Driver: "nvidia", DeviceIDs: []string{"0", "GPU-1234"}, Capabilities: [][]string{{"gpu"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, _ := e.spec("node1")
			spec.GPUs = c.gpus
			st, err := d.Ensure(ctx, spec, Running)
			if err == nil {
				t.Fatalf("Ensure with a GPU request succeeded on a host without NVIDIA runtime: %+v", st)
			}
			msg := err.Error()
			if !strings.Contains(msg, "start container") || !strings.Contains(msg, spec.Name) || !strings.Contains(msg, "nvidia") {
				t.Fatalf("start error is not clear: %v", err)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Fatalf("start error wrongly wraps ErrUnavailable: %v", err)
			}
			if !st.Exists || st.Running || st.ContainerID == "" {
				t.Fatalf("state after failed start: %+v", st)
			}
			info := e.inspectRaw(st.ContainerID)
			got := info.HostConfig.DeviceRequests
			if len(got) != 1 || got[0].Driver != c.want.Driver || got[0].Count != c.want.Count ||
				!reflect.DeepEqual(got[0].DeviceIDs, c.want.DeviceIDs) || !reflect.DeepEqual(got[0].Capabilities, c.want.Capabilities) {
				t.Fatalf("device requests %+v, want [%+v]", got, c.want)
			}
			t.Logf("start error, as an operator sees it: %v", err)
		})
	}

	// The seed deployment's runtime: nvidia is refused at create.
	spec, _ := e.spec("node1")
	spec.Runtime = "nvidia"
	_, err := d.Ensure(ctx, spec, Running)
	if err == nil || !strings.Contains(err.Error(), "create container") || !strings.Contains(err.Error(), "nvidia") {
		t.Fatalf("runtime nvidia: %v", err)
	}
}

// TestDocker_Adopt: an agent restart (a new driver) keeps a matching
// running container; a changed spec recreates it; stale containers of ours
// go; foreign ones stay.
func TestDocker_Adopt(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t, 2*time.Minute)
	spec, _ := e.spec("node1")

	d1 := e.driver("node1")
	st1, err := d1.Ensure(ctx, spec, Running)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	d1.Close()

	// "Agent restart": a fresh driver adopts the running container.
	d2 := e.driver("node1")
	st2, err := d2.Ensure(ctx, spec, Running)
	if err != nil {
		t.Fatalf("Ensure after restart: %v", err)
	}
	if st2.ContainerID != st1.ContainerID || !st2.StartedAt.Equal(st1.StartedAt) || st2.RestartCount != 0 {
		t.Fatalf("not adopted: before %+v after %+v", st1, st2)
	}
	raw := e.inspectRaw(st1.ContainerID)
	if parseDockerTime(raw.State.StartedAt) != st1.StartedAt {
		t.Fatalf("container was restarted: StartedAt %s, first %s", raw.State.StartedAt, st1.StartedAt)
	}

	// A changed spec recreates it.
	changed := spec
	changed.Env = map[string]string{"NODE_NAME": "node1", "VERSION": "2"}
	st3, err := d2.Ensure(ctx, changed, Running)
	if err != nil {
		t.Fatalf("Ensure changed: %v", err)
	}
	if st3.ContainerID == st1.ContainerID || !st3.Running || st3.SpecHash != changed.Hash() {
		t.Fatalf("changed spec not recreated: %+v", st3)
	}
	if _, err := e.cli.ContainerInspect(ctx, st1.ContainerID); !errdefs.IsNotFound(err) {
		t.Fatalf("old container still there: %v", err)
	}

	// Another node's container on the same daemon is not ours to touch.
	other := e.driver("node2")
	otherSpec, _ := e.spec("node2")
	stOther, err := other.Ensure(ctx, otherSpec, Running)
	if err != nil {
		t.Fatalf("node2 Ensure: %v", err)
	}

	// A stale container of ours under another name is removed.
	renamed := changed
	renamed.Name = changed.Name + "-v2"
	st4, err := d2.Ensure(ctx, renamed, Running)
	if err != nil {
		t.Fatalf("Ensure renamed: %v", err)
	}
	if _, err := e.cli.ContainerInspect(ctx, st3.ContainerID); !errdefs.IsNotFound(err) {
		t.Fatalf("stale container %s still there: %v", st3.Name, err)
	}
	if s := e.inspectRaw(stOther.ContainerID); !s.State.Running {
		t.Fatalf("node2's container was touched: %+v", s.State)
	}

	// A foreign container holding the name is never touched: clear error.
	foreignName := uniqueName(t) + "-foreign"
	resp, err := e.cli.ContainerCreate(ctx, &container.Config{Image: e.image, Labels: map[string]string{labelTest: e.cluster}},
		&container.HostConfig{}, &network.NetworkingConfig{}, nil, foreignName)
	if err != nil {
		t.Fatalf("create foreign container: %v", err)
	}
	foreign := renamed
	foreign.Name = foreignName
	_, err = d2.Ensure(ctx, foreign, Running)
	if !errors.Is(err, ErrNameConflict) || !strings.Contains(err.Error(), foreignName) || !strings.Contains(err.Error(), "no newbieha labels") {
		t.Fatalf("foreign name: %v, want ErrNameConflict naming %s", err, foreignName)
	}
	if s := e.inspectRaw(resp.ID); s.State.Status != "created" {
		t.Fatalf("foreign container was touched: %+v", s.State)
	}
	// Our previous container is gone by then (it was stale for the new
	// spec); node2's name is also refused, as another node's.
	foreign.Name = otherSpec.Name
	_, err = d2.Ensure(ctx, foreign, Running)
	if !errors.Is(err, ErrNameConflict) || !strings.Contains(err.Error(), `node "node2"`) {
		t.Fatalf("node2's name: %v, want ErrNameConflict naming node2", err)
	}
	if _, err := e.cli.ContainerInspect(ctx, st4.ContainerID); !errdefs.IsNotFound(err) {
		t.Fatalf("stale container survived: %v", err)
	}
}

func TestDocker_ImageMissing(t *testing.T) {
	e := newTestEnv(t)
	d := e.driver("node1")
	ctx := ctxT(t, time.Minute)
	spec, _ := e.spec("node1")
	spec.Image = "nbha-test/no-such-image:" + strings.ToLower(uniqueName(t)[len(uniqueName(t))-8:])
	spec.PullPolicy = PullNever
	st, err := d.Ensure(ctx, spec, Running)
	if !errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), spec.Image) {
		t.Fatalf("Ensure = %+v, %v; want ErrImageNotFound naming %s", st, err, spec.Image)
	}
	if st, err := d.Inspect(ctx); err != nil || st.Exists {
		t.Fatalf("a container was created: %+v, %v", st, err)
	}
}

// TestDocker_HotCold: two nodes on one daemon, a failover from node1 to
// node2. Cold stops the old active's container and starts the new one's;
// hot leaves both running.
func TestDocker_HotCold(t *testing.T) {
	for _, mode := range []Mode{Cold, Hot} {
		t.Run(string(mode), func(t *testing.T) {
			e := newTestEnv(t)
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			type node struct {
				d    *Docker
				r    *Reconciler
				port int
			}
			nodes := map[string]*node{}
			for _, name := range []string{"node1", "node2"} {
				spec, port := e.spec(name)
				d := e.driver(name)
				r, err := NewReconciler(ReconcilerConfig{Driver: d, Spec: spec, Mode: mode, Interval: 200 * time.Millisecond,
					Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second}, Logger: testLogger(t)})
				if err != nil {
					t.Fatal(err)
				}
				nodes[name] = &node{d: d, r: r, port: port}
				startReconciler(t, r)
			}
			running := func(name string) bool {
				st, err := nodes[name].d.Inspect(ctx)
				return err == nil && st.Running
			}
			id := func(name string) string {
				st, err := nodes[name].d.Inspect(ctx)
				if err != nil {
					t.Fatalf("inspect %s: %v", name, err)
				}
				return st.ContainerID
			}

			nodes["node1"].r.Update(true)
			waitFor(t, 30*time.Second, "node1 running", func() bool { return running("node1") })
			if mode == Hot {
				waitFor(t, 30*time.Second, "node2 running (hot standby)", func() bool { return running("node2") })
			} else {
				// Give node2's reconciler time to act on its own; it must
				// keep no container running.
				waitFor(t, 10*time.Second, "node2 reconciled stopped", func() bool {
					s := nodes["node2"].r.Status()
					return !s.At.IsZero() && s.Want == Stopped && s.Err == nil
				})
				if running("node2") {
					t.Fatal("cold standby node2 runs the container")
				}
			}
			waitFor(t, 20*time.Second, "node1 serves", func() bool { by, err := getServedBy(nodes["node1"].port); return err == nil && by == "node1" })
			before1, before2 := id("node1"), ""
			if mode == Hot {
				before2 = id("node2")
			}

			// Failover: node1 loses, node2 gains.
			nodes["node1"].r.Update(false)
			nodes["node2"].r.Update(true)
			waitFor(t, 30*time.Second, "node2 running after failover", func() bool { return running("node2") })
			waitFor(t, 20*time.Second, "node2 serves", func() bool { by, err := getServedBy(nodes["node2"].port); return err == nil && by == "node2" })
			if mode == Cold {
				waitFor(t, 30*time.Second, "node1 stopped after failover", func() bool {
					st, err := nodes["node1"].d.Inspect(ctx)
					return err == nil && st.Exists && !st.Running && st.Status == "exited"
				})
			} else {
				// Hot: nothing restarts, both keep running.
				waitFor(t, 10*time.Second, "node1 reconciled after failover", func() bool {
					s := nodes["node1"].r.Status()
					return !s.Active && s.Err == nil && s.At.After(time.Now().Add(-time.Second))
				})
				if !running("node1") || id("node1") != before1 || id("node2") != before2 {
					t.Fatalf("hot failover touched containers: node1 running=%v", running("node1"))
				}
			}
		})
	}
}

// TestDocker_Unavailable: a driver pointed at a socket that does not exist
// says the runtime is unavailable, and recovers by itself once the socket
// appears (a proxy to the real daemon). A daemon that accepts but never
// answers reads as unavailable too.
func TestDocker_Unavailable(t *testing.T) {
	e := newTestEnv(t)
	target := daemonSocket(t, e.cli)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	d := e.driver("node1", func(c *DockerConfig) { c.Host = "unix://" + sock; c.CallTimeout = 5 * time.Second })
	ctx := ctxT(t, 2*time.Minute)
	spec, port := e.spec("node1")

	_, err := d.Ensure(ctx, spec, Running)
	if !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), "runtime unavailable: ") || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Ensure with no socket: %v; want ErrUnavailable naming %s", err, sock)
	}
	if _, err := d.Inspect(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Inspect with no socket: %v", err)
	}
	t.Logf("as an operator sees it: %v", err)

	// The socket comes back: the same driver recovers.
	startUnixProxy(t, sock, target)
	st, err := d.Ensure(ctx, spec, Running)
	if err != nil || !st.Running {
		t.Fatalf("Ensure after the socket returned: %+v, %v", st, err)
	}
	waitFor(t, 20*time.Second, "stub serves", func() bool { _, err := getServedBy(port); return err == nil })

	// A hung daemon: accepts, never answers.
	hung := filepath.Join(t.TempDir(), "hung.sock")
	ln, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	dh := e.driver("node1", func(c *DockerConfig) { c.Host = "unix://" + hung; c.CallTimeout = 300 * time.Millisecond })
	start := time.Now()
	_, err = dh.Inspect(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("Inspect on a hung daemon: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("hung daemon blocked for %s", el)
	}
}

// TestDocker_RetryRecovers drives Retry with a driver whose socket appears
// while it retries.
func TestDocker_RetryRecovers(t *testing.T) {
	e := newTestEnv(t)
	target := daemonSocket(t, e.cli)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	d := e.driver("node1", func(c *DockerConfig) { c.Host = "unix://" + sock })
	ctx := ctxT(t, time.Minute)
	attempts := 0
	err := Retry(ctx, Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}, func(ctx context.Context) error {
		attempts++
		if attempts == 3 {
			startUnixProxy(t, sock, target)
		}
		_, err := d.Inspect(ctx)
		return err
	})
	if err != nil || attempts < 3 {
		t.Fatalf("Retry = %v after %d attempts", err, attempts)
	}
}
