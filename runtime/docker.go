package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"
)

// DockerConfig configures the Docker driver.
type DockerConfig struct {
	// Host is the daemon address, e.g. "unix:///var/run/docker.sock"; empty
	// means DOCKER_HOST or Docker's default socket.
	Host string
	// Cluster is the cluster's name or ID, written into LabelCluster. Required.
	Cluster string
	// Node is this node's name, written into LabelNode. Required.
	Node string
	// CallTimeout bounds each API call, so that a hung daemon reads as
	// unavailable instead of blocking the agent; 0 means 10 s. A stop may
	// take the container's stop timeout on top of it.
	CallTimeout time.Duration
	// PullTimeout bounds an image pull; 0 means 30 min.
	PullTimeout time.Duration
}

// Defaults of DockerConfig.
const (
	DefaultCallTimeout = 10 * time.Second
	DefaultPullTimeout = 30 * time.Minute
)

// Validate checks the config, naming the bad field.
func (c DockerConfig) Validate() error {
	if c.Cluster == "" {
		return errors.New("docker driver: cluster: required")
	}
	if c.Node == "" {
		return errors.New("docker driver: node: required")
	}
	if c.CallTimeout < 0 {
		return fmt.Errorf("docker driver: call timeout: %s is negative", c.CallTimeout)
	}
	if c.PullTimeout < 0 {
		return fmt.Errorf("docker driver: pull timeout: %s is negative", c.PullTimeout)
	}
	return nil
}

// Docker is the Driver that runs the service through the Docker Engine API.
// It keeps no cached view of the daemon: every call asks it afresh, so the
// driver recovers by itself when a lost daemon comes back.
type Docker struct {
	cfg DockerConfig
	cli *client.Client
	// mu serialises Ensure and Remove, which read, then change, the set
	// of our containers.
	mu sync.Mutex

	// The client negotiates its API version on first use, and in v28.5.2
	// some calls (ContainerList) read the version without the lock the
	// negotiation writes it under: concurrent first calls race. So the
	// driver negotiates once, alone, before any other call.
	negMu      sync.Mutex
	negotiated atomic.Bool
}

var _ Driver = (*Docker)(nil)

// NewDocker returns a Docker driver. It does not contact the daemon: a
// daemon that is down now is reported by the first call, not here.
func NewDocker(cfg DockerConfig) (*Docker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.PullTimeout == 0 {
		cfg.PullTimeout = DefaultPullTimeout
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker driver: new client: %w", err)
	}
	return &Docker{cfg: cfg, cli: cli}, nil
}

// Close releases the client's connections.
func (d *Docker) Close() error {
	if err := d.cli.Close(); err != nil {
		return fmt.Errorf("close docker client: %w", err)
	}
	return nil
}

// call runs one API call under CallTimeout (plus extra) and classifies its
// error: an unreachable or hung daemon gives an error wrapping
// ErrUnavailable.
func (d *Docker) call(ctx context.Context, op string, extra time.Duration, fn func(context.Context) error) error {
	if err := d.negotiate(ctx, op); err != nil {
		return err
	}
	return d.classify(ctx, op, extra, fn)
}

// negotiate settles the API version with the daemon once (see negotiated).
// A daemon that cannot be reached leaves it to the next call.
func (d *Docker) negotiate(ctx context.Context, op string) error {
	if d.negotiated.Load() {
		return nil
	}
	d.negMu.Lock()
	defer d.negMu.Unlock()
	if d.negotiated.Load() {
		return nil
	}
	err := d.classify(ctx, op, 0, func(ctx context.Context) error {
		ping, err := d.cli.Ping(ctx)
		if err != nil {
			return err
		}
		d.cli.NegotiateAPIVersionPing(ping)
		return nil
	})
	if err != nil {
		return err
	}
	d.negotiated.Store(true)
	return nil
}

// classify runs fn under the call timeout and classifies its error.
func (d *Docker) classify(ctx context.Context, op string, extra time.Duration, fn func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout+extra)
	defer cancel()
	err := fn(cctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up: not the daemon's fault.
		return fmt.Errorf("%s: %w", op, context.Cause(ctx))
	}
	if isUnavailable(err) || cctx.Err() != nil {
		if cctx.Err() != nil && !client.IsErrConnectionFailed(err) {
			return fmt.Errorf("%w: %s: docker daemon at %s did not answer within %s: %w",
				ErrUnavailable, op, d.cli.DaemonHost(), d.cfg.CallTimeout+extra, err)
		}
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isUnavailable reports errors that mean "cannot talk to the daemon".
func isUnavailable(err error) bool {
	return client.IsErrConnectionFailed(err) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// ourFilter selects the containers of this driver's cluster and node.
func (d *Docker) ourFilter() filters.Args {
	return filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelCluster+"="+d.cfg.Cluster),
		filters.Arg("label", LabelNode+"="+d.cfg.Node),
	)
}

// listOurs returns every container (any state) of this cluster and node.
func (d *Docker) listOurs(ctx context.Context) ([]container.Summary, error) {
	var list []container.Summary
	err := d.call(ctx, "list containers", 0, func(ctx context.Context) error {
		var err error
		list, err = d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: d.ourFilter()})
		return err
	})
	return list, err
}

func (d *Docker) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	var info container.InspectResponse
	err := d.call(ctx, "inspect container "+id, 0, func(ctx context.Context) error {
		var err error
		info, err = d.cli.ContainerInspect(ctx, id)
		return err
	})
	return info, err
}

// summaryName is a container's name without Docker's leading slash.
func summaryName(c container.Summary) string {
	if len(c.Names) == 0 {
		return ""
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

// Ensure makes the service match spec and want. The rules:
//   - a container of ours with spec's name and hash is kept (adopted) as it
//     is: an agent restart does not restart the model;
//   - every other container of ours (older hash, other name) is stopped and
//     removed; so a changed spec recreates the container;
//   - a container without our cluster's and node's labels is never
//     touched; if it holds spec's name, Ensure fails with ErrNameConflict;
//   - Running starts the container (creating it first if needed; the image
//     must be present or pullable); Stopped stops it and keeps it, so its
//     logs stay readable.
func (d *Docker) Ensure(ctx context.Context, spec Spec, want Want) (State, error) {
	if err := spec.Validate(); err != nil {
		return State{}, err
	}
	if err := want.Validate(); err != nil {
		return State{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()

	ours, err := d.listOurs(ctx)
	if err != nil {
		return State{}, err
	}
	hash := spec.Hash()
	var keep *container.Summary
	for i := range ours {
		c := ours[i]
		if keep == nil && summaryName(c) == spec.Name && c.Labels[LabelSpecHash] == hash {
			keep = &ours[i]
			continue
		}
		if err := d.removeContainer(ctx, c.ID, summaryName(c)); err != nil {
			return State{}, fmt.Errorf("remove stale container %q: %w", summaryName(c), err)
		}
	}
	if keep == nil {
		if err := d.checkNameFree(ctx, spec.Name); err != nil {
			return State{}, err
		}
	}

	if want == Stopped {
		if keep == nil {
			return State{Status: StatusAbsent}, nil
		}
		info, err := d.inspect(ctx, keep.ID)
		if err != nil {
			return State{}, err
		}
		if info.State != nil && (info.State.Running || info.State.Restarting) {
			if err := d.stop(ctx, info); err != nil {
				return stateFrom(info), err
			}
		}
		return d.inspectState(ctx, keep.ID)
	}

	id := ""
	if keep != nil {
		id = keep.ID
	} else {
		if err := d.ensureImage(ctx, spec); err != nil {
			return State{}, err
		}
		id, err = d.create(ctx, spec)
		if err != nil {
			return State{}, err
		}
	}
	info, err := d.inspect(ctx, id)
	if err != nil {
		return State{}, err
	}
	st := stateFrom(info)
	switch {
	case info.State == nil:
	case info.State.Paused:
		if err := d.call(ctx, "unpause container "+spec.Name, 0, func(ctx context.Context) error {
			return d.cli.ContainerUnpause(ctx, id)
		}); err != nil {
			return st, err
		}
	case info.State.Running || info.State.Restarting:
		// Adopted as it is; a restarting container is Docker's to restart.
		return st, nil
	default:
		if err := d.call(ctx, fmt.Sprintf("start container %q (image %s)", spec.Name, spec.Image), 0, func(ctx context.Context) error {
			return d.cli.ContainerStart(ctx, id, container.StartOptions{})
		}); err != nil {
			if st2, ierr := d.inspectState(ctx, id); ierr == nil {
				st = st2
			}
			return st, err
		}
	}
	return d.inspectState(ctx, id)
}

// checkNameFree fails with ErrNameConflict when name is held by a
// container that is not ours.
func (d *Docker) checkNameFree(ctx context.Context, name string) error {
	info, err := d.inspect(ctx, name)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	// Docker also resolves an ID prefix: only an exact name is a conflict.
	if strings.TrimPrefix(info.Name, "/") != name {
		return nil
	}
	owner := "has no newbieha labels"
	if info.Config != nil && info.Config.Labels[LabelManaged] == "true" {
		owner = fmt.Sprintf("belongs to cluster %q node %q", info.Config.Labels[LabelCluster], info.Config.Labels[LabelNode])
	}
	return fmt.Errorf("%w: container %q (id %.12s) %s; remove or rename it, or choose another name",
		ErrNameConflict, name, info.ID, owner)
}

// ensureImage checks the image is present and pulls it if the policy allows.
func (d *Docker) ensureImage(ctx context.Context, spec Spec) error {
	err := d.call(ctx, "inspect image "+spec.Image, 0, func(ctx context.Context) error {
		_, err := d.cli.ImageInspect(ctx, spec.Image)
		return err
	})
	if err == nil {
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return err
	}
	if spec.PullPolicy == PullNever {
		return fmt.Errorf("%w: image %q is not present locally and pull_policy is never", ErrImageNotFound, spec.Image)
	}
	perr := d.call(ctx, "pull image "+spec.Image, d.cfg.PullTimeout, func(ctx context.Context) error {
		rc, err := d.cli.ImagePull(ctx, spec.Image, image.PullOptions{})
		if err != nil {
			return err
		}
		defer rc.Close()
		return readPullStream(rc)
	})
	if perr != nil {
		if errors.Is(perr, ErrUnavailable) {
			return perr
		}
		return fmt.Errorf("%w: image %q is not present locally and pulling it failed: %w", ErrImageNotFound, spec.Image, perr)
	}
	return nil
}

// readPullStream reads a pull's progress stream to its end and returns the
// error the daemon reported in it, if any.
func readPullStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read pull progress: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// ContainerConfig returns the Docker create options for spec, labelled for
// cluster and node. It is exported so callers and tests can see exactly
// what Ensure creates.
func ContainerConfig(spec Spec, cluster, node string) (*container.Config, *container.HostConfig, error) {
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManaged] = "true"
	labels[LabelCluster] = cluster
	labels[LabelNode] = node
	labels[LabelSpecHash] = spec.Hash()

	env := make([]string, 0, len(spec.Env))
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	stopSecs := int(spec.EffectiveStopTimeout() / time.Second)
	cfg := &container.Config{
		Image:       spec.Image,
		Cmd:         spec.Command,
		Entrypoint:  spec.Entrypoint,
		WorkingDir:  spec.WorkingDir,
		User:        spec.User,
		Env:         env,
		Labels:      labels,
		StopTimeout: &stopSecs,
	}
	host := &container.HostConfig{
		Privileged:  spec.Privileged,
		Runtime:     spec.Runtime,
		ShmSize:     spec.ShmSize,
		NetworkMode: container.NetworkMode(spec.NetworkMode),
		RestartPolicy: container.RestartPolicy{
			Name:              container.RestartPolicyMode(spec.RestartPolicy.Name),
			MaximumRetryCount: spec.RestartPolicy.MaxRetries,
		},
	}
	if len(spec.Ports) > 0 {
		cfg.ExposedPorts = nat.PortSet{}
		host.PortBindings = nat.PortMap{}
		for _, p := range spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			port, err := nat.NewPort(proto, strconv.Itoa(p.ContainerPort))
			if err != nil {
				return nil, nil, fmt.Errorf("port %d/%s: %w", p.ContainerPort, proto, err)
			}
			cfg.ExposedPorts[port] = struct{}{}
			hp := ""
			if p.HostPort != 0 {
				hp = strconv.Itoa(p.HostPort)
			}
			host.PortBindings[port] = append(host.PortBindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: hp})
		}
	}
	for _, m := range spec.Mounts {
		b := m.Source + ":" + m.Target
		if m.ReadOnly {
			b += ":ro"
		}
		host.Binds = append(host.Binds, b)
	}
	if g := spec.GPUs; !g.IsZero() {
		req := container.DeviceRequest{
			Driver:       g.Driver,
			Capabilities: [][]string{{"gpu"}},
		}
		if req.Driver == "" {
			req.Driver = DefaultGPUDriver
		}
		switch {
		case g.All:
			req.Count = -1
		case len(g.DeviceIDs) > 0:
			req.DeviceIDs = slices.Clone(g.DeviceIDs)
		default:
			req.Count = g.Count
		}
		host.DeviceRequests = []container.DeviceRequest{req}
	}
	ulimits := slices.Clone(spec.Ulimits)
	sort.Slice(ulimits, func(i, j int) bool { return ulimits[i].Name < ulimits[j].Name })
	for _, u := range ulimits {
		host.Ulimits = append(host.Ulimits, &units.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	return cfg, host, nil
}

func (d *Docker) create(ctx context.Context, spec Spec) (string, error) {
	cfg, host, err := ContainerConfig(spec, d.cfg.Cluster, d.cfg.Node)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", spec.Name, err)
	}
	var id string
	err = d.call(ctx, fmt.Sprintf("create container %q (image %s)", spec.Name, spec.Image), 0, func(ctx context.Context) error {
		resp, err := d.cli.ContainerCreate(ctx, cfg, host, nil, nil, spec.Name)
		id = resp.ID
		return err
	})
	return id, err
}

// stop stops a container gracefully: SIGTERM, then SIGKILL after the
// container's stop timeout.
func (d *Docker) stop(ctx context.Context, info container.InspectResponse) error {
	secs := int(DefaultStopTimeout / time.Second)
	if info.Config != nil && info.Config.StopTimeout != nil && *info.Config.StopTimeout >= 0 {
		secs = *info.Config.StopTimeout
	}
	name := strings.TrimPrefix(info.Name, "/")
	return d.call(ctx, fmt.Sprintf("stop container %q", name), time.Duration(secs)*time.Second, func(ctx context.Context) error {
		return d.cli.ContainerStop(ctx, info.ID, container.StopOptions{Timeout: &secs})
	})
}

// removeContainer stops (gracefully) and removes one container of ours.
func (d *Docker) removeContainer(ctx context.Context, id, name string) error {
	info, err := d.inspect(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if info.State != nil && (info.State.Running || info.State.Restarting || info.State.Paused) {
		if err := d.stop(ctx, info); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	err = d.call(ctx, fmt.Sprintf("remove container %q", name), 0, func(ctx context.Context) error {
		return d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	})
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// Inspect reports the container of this cluster and node: a running one
// before others, then the newest. No container gives Status StatusAbsent.
func (d *Docker) Inspect(ctx context.Context) (State, error) {
	ours, err := d.listOurs(ctx)
	if err != nil {
		return State{}, err
	}
	if len(ours) == 0 {
		return State{Status: StatusAbsent}, nil
	}
	slices.SortStableFunc(ours, func(a, b container.Summary) int {
		ar, br := a.State == container.StateRunning, b.State == container.StateRunning
		if ar != br {
			if ar {
				return -1
			}
			return 1
		}
		return int(b.Created - a.Created)
	})
	st, err := d.inspectState(ctx, ours[0].ID)
	if errdefs.IsNotFound(err) {
		// Removed between list and inspect.
		return State{Status: StatusAbsent}, nil
	}
	return st, err
}

func (d *Docker) inspectState(ctx context.Context, id string) (State, error) {
	info, err := d.inspect(ctx, id)
	if err != nil {
		return State{}, err
	}
	return stateFrom(info), nil
}

// Remove stops and removes every container of this cluster and node.
func (d *Docker) Remove(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ours, err := d.listOurs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range ours {
		if err := d.removeContainer(ctx, c.ID, summaryName(c)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stateFrom converts Docker's inspect answer.
func stateFrom(info container.InspectResponse) State {
	st := State{Exists: true, Status: "unknown"}
	if info.ContainerJSONBase == nil {
		return st
	}
	st.ContainerID = info.ID
	st.Name = strings.TrimPrefix(info.Name, "/")
	st.RestartCount = info.RestartCount
	if info.Config != nil {
		st.Image = info.Config.Image
		st.SpecHash = info.Config.Labels[LabelSpecHash]
	}
	if s := info.State; s != nil {
		st.Status = string(s.Status)
		st.Running = s.Running
		st.ExitCode = s.ExitCode
		st.Error = s.Error
		st.OOMKilled = s.OOMKilled
		st.StartedAt = parseDockerTime(s.StartedAt)
		st.FinishedAt = parseDockerTime(s.FinishedAt)
		// Docker keeps the last health status of a stopped container;
		// it means nothing once the process is gone.
		if s.Health != nil && s.Running {
			st.Health = string(s.Health.Status)
		}
	}
	return st
}

// parseDockerTime parses Docker's RFC 3339 times; Docker's "never"
// (0001-01-01T00:00:00Z) and garbage give the zero time.
func parseDockerTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

var _ Suspender = (*Docker)(nil)

// running is the running container of ours, for a drill to stop or
// pause; none is an error naming what was found.
func (d *Docker) running(ctx context.Context) (container.InspectResponse, error) {
	ours, err := d.listOurs(ctx)
	if err != nil {
		return container.InspectResponse{}, err
	}
	for _, c := range ours {
		info, err := d.inspect(ctx, c.ID)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return container.InspectResponse{}, err
		}
		if info.State != nil && info.State.Running && !info.State.Paused {
			return info, nil
		}
	}
	return container.InspectResponse{}, fmt.Errorf("no running service container of this node (%d of ours)", len(ours))
}

// StopService implements Suspender: the running container of ours is
// stopped as Ensure stops it (SIGTERM, SIGKILL after its stop timeout).
func (d *Docker) StopService(ctx context.Context) (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	info, err := d.running(ctx)
	if err != nil {
		return State{}, err
	}
	if err := d.stop(ctx, info); err != nil {
		return stateFrom(info), err
	}
	return d.inspectState(ctx, info.ID)
}

// PauseService implements Suspender: the running container of ours is
// frozen (docker pause).
func (d *Docker) PauseService(ctx context.Context) (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	info, err := d.running(ctx)
	if err != nil {
		return State{}, err
	}
	name := strings.TrimPrefix(info.Name, "/")
	if err := d.call(ctx, fmt.Sprintf("pause container %q", name), 0, func(ctx context.Context) error {
		return d.cli.ContainerPause(ctx, info.ID)
	}); err != nil {
		return stateFrom(info), err
	}
	return d.inspectState(ctx, info.ID)
}
