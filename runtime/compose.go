package runtime

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeSupported lists every compose attribute LoadCompose honours, as
// compose-go attribute paths ("*" any key, "[]" any list item). The loader
// reports every attribute set in the file that is not listed (fail-closed:
// an attribute the specification gains later is refused until it is
// mapped here). Extension keys (x-*) are never reported, as the
// specification says tools ignore them.
var composeSupported = []tree.Path{
	"name",
	"services",
	"services.*",
	"services.*.image",
	"services.*.container_name",
	"services.*.command",
	"services.*.entrypoint",
	"services.*.working_dir",
	"services.*.user",
	"services.*.environment",
	"services.*.environment.*",
	"services.*.env_file",
	"services.*.env_file.[].path",
	"services.*.env_file.[].required",
	"services.*.ports",
	"services.*.ports.[].target",
	"services.*.ports.[].published",
	"services.*.ports.[].host_ip",
	"services.*.ports.[].protocol",
	"services.*.ports.[].mode",
	"services.*.volumes",
	"services.*.volumes.[].type",
	"services.*.volumes.[].source",
	"services.*.volumes.[].target",
	"services.*.volumes.[].read_only",
	"services.*.volumes.[].bind",
	"services.*.volumes.[].bind.create_host_path",
	"services.*.volumes.[].volume", // the short syntax gives an empty one
	"services.*.privileged",
	"services.*.runtime",
	"services.*.network_mode",
	"services.*.gpus",
	"services.*.gpus.[].capabilities",
	"services.*.gpus.[].count",
	"services.*.gpus.[].device_ids",
	"services.*.gpus.[].driver",
	"services.*.deploy",
	"services.*.deploy.resources",
	"services.*.deploy.resources.reservations",
	"services.*.deploy.resources.reservations.devices",
	"services.*.deploy.resources.reservations.devices.[].capabilities",
	"services.*.deploy.resources.reservations.devices.[].count",
	"services.*.deploy.resources.reservations.devices.[].device_ids",
	"services.*.deploy.resources.reservations.devices.[].driver",
	"services.*.shm_size",
	"services.*.ulimits",
	"services.*.ulimits.*",
	"services.*.ulimits.*.soft",
	"services.*.ulimits.*.hard",
	"services.*.restart",
	"services.*.labels",
	"services.*.labels.*",
	"services.*.stop_grace_period",
	"services.*.pull_policy",
	"volumes",
	"volumes.*",
	"volumes.*.name",
	"volumes.*.external",
}

// LoadCompose reads a docker-compose file with the compose-spec loader and
// returns the Spec of one service. Interpolation works as in Docker
// Compose: ${VAR} from the process environment and a .env file next to the
// compose file; relative paths are relative to the compose file. Every
// attribute of the service (and of the named volumes it uses) that newbieha
// cannot honour is an error naming it, never silently dropped.
func LoadCompose(ctx context.Context, file, service string) (Spec, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return Spec{}, fmt.Errorf("compose file %s: %w", file, err)
	}
	var findings []loader.UnsupportedAttribute
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithLoadOptions(loader.WithSupportedAttributes(composeSupported, func(f []loader.UnsupportedAttribute) {
			findings = f
		})),
	)
	if err != nil {
		return Spec{}, fmt.Errorf("compose file %s: %w", abs, err)
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		return Spec{}, fmt.Errorf("compose file %s: %w", abs, err)
	}
	svc, ok := project.Services[service]
	if !ok {
		return Spec{}, fmt.Errorf("compose file %s: no service %q (services: %s)",
			abs, service, strings.Join(slices.Sorted(maps.Keys(project.Services)), ", "))
	}
	if err := unsupportedKeys(findings, project, svc); err != nil {
		return Spec{}, fmt.Errorf("compose file %s: %w", abs, err)
	}
	spec, err := specFromService(project, svc)
	if err != nil {
		return Spec{}, fmt.Errorf("compose file %s: compose service %q: %w", abs, service, err)
	}
	if err := spec.Validate(); err != nil {
		return Spec{}, fmt.Errorf("compose file %s: compose service %q: %w", abs, service, err)
	}
	return spec, nil
}

// unsupportedKeys turns the loader's findings under the service, and under
// the top-level volumes it uses, into one error naming every key.
func unsupportedKeys(findings []loader.UnsupportedAttribute, project *types.Project, svc types.ServiceConfig) error {
	svcPath := string(tree.NewPath("services").Next(svc.Name)) + "."
	var keys []string
	for _, f := range findings {
		p := string(f.Path)
		if rest, ok := strings.CutPrefix(p, svcPath); ok {
			keys = append(keys, keyName(rest))
		}
	}
	for _, v := range svc.Volumes {
		if v.Type != types.VolumeTypeVolume || v.Source == "" {
			continue
		}
		volPath := string(tree.NewPath("volumes").Next(v.Source)) + "."
		for _, f := range findings {
			if rest, ok := strings.CutPrefix(string(f.Path), volPath); ok {
				keys = append(keys, "volumes."+v.Source+"."+keyName(rest)+" (top level)")
			}
		}
	}
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	switch len(keys) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("compose service %q: key %q is not supported", svc.Name, keys[0])
	default:
		return fmt.Errorf("compose service %q: keys %s are not supported", svc.Name, quoteJoin(keys))
	}
}

// keyName renders a path below a service as the user wrote it:
// "ports[].name" rather than compose-go's "ports.[].name".
func keyName(p string) string {
	return strings.ReplaceAll(tree.Path(p).String(), "."+tree.PathMatchList, tree.PathMatchList)
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// specFromService maps one loaded service; values the attribute check
// cannot see (a value newbieha cannot honour, such as a tmpfs volume or
// restart "always:3") are errors naming the key.
func specFromService(project *types.Project, svc types.ServiceConfig) (Spec, error) {
	s := Spec{
		Name:        svc.ContainerName,
		Image:       svc.Image,
		Command:     []string(svc.Command),
		Entrypoint:  []string(svc.Entrypoint),
		WorkingDir:  svc.WorkingDir,
		User:        svc.User,
		Privileged:  svc.Privileged,
		Runtime:     svc.Runtime,
		NetworkMode: svc.NetworkMode,
		ShmSize:     int64(svc.ShmSize),
	}
	if s.Name == "" {
		s.Name = svc.Name
	}
	if s.Image == "" {
		return Spec{}, fmt.Errorf("key \"image\": required (newbieha does not build images)")
	}
	switch svc.NetworkMode {
	case "", "bridge", "host", "none":
	default:
		return Spec{}, fmt.Errorf("key \"network_mode\": %q is not supported (bridge, host or none)", svc.NetworkMode)
	}
	for k, v := range svc.Environment {
		if v == nil {
			continue // unset variable: compose leaves it out too
		}
		if s.Env == nil {
			s.Env = map[string]string{}
		}
		s.Env[k] = *v
	}
	for i, p := range svc.Ports {
		b := PortBinding{ContainerPort: int(p.Target), HostIP: p.HostIP, Protocol: p.Protocol}
		if p.Published != "" {
			hp, err := strconv.Atoi(p.Published)
			if err != nil {
				return Spec{}, fmt.Errorf("key \"ports[%d].published\": %q is not a single port", i, p.Published)
			}
			b.HostPort = hp
		}
		s.Ports = append(s.Ports, b)
	}
	for i, v := range svc.Volumes {
		m := Mount{Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeBind:
			m.Type = MountBind
			if v.Bind != nil && !bool(v.Bind.CreateHostPath) {
				return Spec{}, fmt.Errorf("key \"volumes[%d].bind.create_host_path\": false is not supported (Docker creates a missing bind source)", i)
			}
		case types.VolumeTypeVolume:
			m.Type = MountVolume
			if v.Source == "" {
				return Spec{}, fmt.Errorf("key \"volumes[%d]\": anonymous volume %q is not supported; name it", i, v.Target)
			}
			if def, ok := project.Volumes[v.Source]; ok && def.Name != "" {
				m.Source = def.Name
			}
		default:
			return Spec{}, fmt.Errorf("key \"volumes[%d].type\": %q is not supported (bind or volume)", i, v.Type)
		}
		s.Mounts = append(s.Mounts, m)
	}
	gpus, err := gpuFromCompose(svc)
	if err != nil {
		return Spec{}, err
	}
	s.GPUs = gpus
	for _, name := range slices.Sorted(maps.Keys(svc.Ulimits)) {
		u := svc.Ulimits[name]
		if u == nil {
			continue
		}
		l := Ulimit{Name: name, Soft: int64(u.Soft), Hard: int64(u.Hard)}
		if u.Single != 0 {
			l.Soft, l.Hard = int64(u.Single), int64(u.Single)
		}
		s.Ulimits = append(s.Ulimits, l)
	}
	rp, err := parseRestart(svc.Restart)
	if err != nil {
		return Spec{}, err
	}
	s.RestartPolicy = rp
	if len(svc.Labels) > 0 {
		s.Labels = maps.Clone(map[string]string(svc.Labels))
	}
	if svc.StopGracePeriod != nil {
		d := time.Duration(*svc.StopGracePeriod)
		// Docker's stop timeout is whole seconds: round up.
		s.StopTimeout = (d + time.Second - 1) / time.Second * time.Second
	}
	switch svc.PullPolicy {
	case "", types.PullPolicyMissing, types.PullPolicyIfNotPresent:
		s.PullPolicy = PullMissing
	case types.PullPolicyNever:
		s.PullPolicy = PullNever
	default:
		return Spec{}, fmt.Errorf("key \"pull_policy\": %q is not supported (missing or never)", svc.PullPolicy)
	}
	return s, nil
}

// gpuFromCompose maps deploy.resources.reservations.devices and gpus to
// one GPU request.
func gpuFromCompose(svc types.ServiceConfig) (GPURequest, error) {
	type src struct {
		key string
		req types.DeviceRequest
	}
	var reqs []src
	if svc.Deploy != nil && svc.Deploy.Resources.Reservations != nil {
		for i, d := range svc.Deploy.Resources.Reservations.Devices {
			reqs = append(reqs, src{fmt.Sprintf("deploy.resources.reservations.devices[%d]", i), d})
		}
	}
	for i, d := range svc.Gpus {
		reqs = append(reqs, src{fmt.Sprintf("gpus[%d]", i), d})
	}
	switch len(reqs) {
	case 0:
		return GPURequest{}, nil
	case 1:
	default:
		return GPURequest{}, fmt.Errorf("key %q: only one GPU device request is supported, found %d", reqs[1].key, len(reqs))
	}
	r := reqs[0]
	caps := r.req.Capabilities
	if strings.HasPrefix(r.key, "gpus") && len(caps) == 0 {
		caps = []string{"gpu"} // gpus: implies the gpu capability
	}
	if !slices.Equal(caps, []string{"gpu"}) {
		return GPURequest{}, fmt.Errorf("key \"%s.capabilities\": %q is not supported (only [gpu])", r.key, caps)
	}
	g := GPURequest{Driver: r.req.Driver}
	switch {
	case len(r.req.IDs) > 0:
		g.DeviceIDs = slices.Clone(r.req.IDs)
	case r.req.Count < 0:
		g.All = true
	case r.req.Count > 0:
		g.Count = int(r.req.Count)
	default:
		// Compose: no count and no device_ids means all GPUs.
		g.All = true
	}
	return g, nil
}

// parseRestart maps compose's restart: no, always, unless-stopped,
// on-failure[:N].
func parseRestart(s string) (RestartPolicy, error) {
	name, n, hasN := strings.Cut(s, ":")
	switch name {
	case "", "no":
		if hasN {
			break
		}
		return RestartPolicy{}, nil
	case "always", "unless-stopped":
		if hasN {
			break
		}
		return RestartPolicy{Name: name}, nil
	case "on-failure":
		if !hasN {
			return RestartPolicy{Name: name}, nil
		}
		max, err := strconv.Atoi(n)
		if err != nil || max < 0 {
			break
		}
		return RestartPolicy{Name: name, MaxRetries: max}, nil
	}
	return RestartPolicy{}, fmt.Errorf("key \"restart\": %q is not no, always, unless-stopped or on-failure[:N]", s)
}
