package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// LabelPrefix starts every label newbieha puts on its containers. A Spec's
// own labels may not use it.
const LabelPrefix = "io.newbieha."

// The labels that mark a container as newbieha's.
const (
	// LabelManaged is "true" on every container newbieha created.
	LabelManaged = LabelPrefix + "managed"
	// LabelCluster names the cluster whose agent created the container.
	LabelCluster = LabelPrefix + "cluster"
	// LabelNode names the node whose agent created the container.
	LabelNode = LabelPrefix + "node"
	// LabelSpecHash is Spec.Hash of the spec the container was created from.
	LabelSpecHash = LabelPrefix + "spec-hash"
)

// DefaultGPUDriver is the device driver of a GPU request that names none.
const DefaultGPUDriver = "nvidia"

// DefaultStopTimeout is how long a stop waits after SIGTERM before SIGKILL
// when the Spec sets no StopTimeout (Docker's own default).
const DefaultStopTimeout = 10 * time.Second

// Spec describes the service container. It is a plain value: the zero value
// of every optional field means "the image's or Docker's default".
type Spec struct {
	// Name is the container name. Required.
	Name string `json:"name" yaml:"name"`
	// Image is the image reference, e.g. "newbieha/stub-model:dev". Required.
	Image string `json:"image" yaml:"image"`
	// Command replaces the image's CMD when not empty.
	Command []string `json:"command,omitempty" yaml:"command,omitempty"`
	// Entrypoint replaces the image's ENTRYPOINT when not empty.
	Entrypoint []string `json:"entrypoint,omitempty" yaml:"entrypoint,omitempty"`
	// WorkingDir replaces the image's WORKDIR when set; absolute.
	WorkingDir string `json:"working_dir,omitempty" yaml:"working_dir,omitempty"`
	// User runs the process as this user ("uid", "uid:gid" or a name).
	User string `json:"user,omitempty" yaml:"user,omitempty"`
	// Env is the process environment added to the image's.
	Env map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	// Ports publishes container ports on the host.
	Ports []PortBinding `json:"ports,omitempty" yaml:"ports,omitempty"`
	// Mounts are bind mounts and named volumes.
	Mounts []Mount `json:"mounts,omitempty" yaml:"mounts,omitempty"`
	// GPUs requests GPUs through a Docker device request; zero means none.
	GPUs GPURequest `json:"gpus,omitzero" yaml:"gpus,omitempty"`
	// RestartPolicy is Docker's restart policy; zero means "no".
	RestartPolicy RestartPolicy `json:"restart_policy,omitzero" yaml:"restart_policy,omitempty"`
	// ShmSize is the size of /dev/shm in bytes; 0 means Docker's default.
	ShmSize int64 `json:"shm_size,omitempty" yaml:"shm_size,omitempty"`
	// Ulimits sets resource limits of the process.
	Ulimits []Ulimit `json:"ulimits,omitempty" yaml:"ulimits,omitempty"`
	// Privileged runs the container privileged.
	Privileged bool `json:"privileged,omitempty" yaml:"privileged,omitempty"`
	// Runtime is the OCI runtime, e.g. "nvidia"; empty means the daemon's default.
	Runtime string `json:"runtime,omitempty" yaml:"runtime,omitempty"`
	// NetworkMode is "bridge" (default when empty), "host" or "none".
	NetworkMode string `json:"network_mode,omitempty" yaml:"network_mode,omitempty"`
	// PullPolicy says whether a missing image may be pulled.
	PullPolicy PullPolicy `json:"pull_policy,omitempty" yaml:"pull_policy,omitempty"`
	// StopTimeout is how long a stop waits between SIGTERM and SIGKILL;
	// 0 means DefaultStopTimeout.
	StopTimeout time.Duration `json:"stop_timeout,omitempty" yaml:"stop_timeout,omitempty"`
	// Labels are added to the container; keys may not start with LabelPrefix.
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// PortBinding publishes one container port.
type PortBinding struct {
	// HostIP is the host address to bind; empty means all addresses.
	HostIP string `json:"host_ip,omitempty" yaml:"host_ip,omitempty"`
	// HostPort is the host port; 0 lets Docker choose one.
	HostPort int `json:"host_port,omitempty" yaml:"host_port,omitempty"`
	// ContainerPort is the port inside the container. Required.
	ContainerPort int `json:"container_port" yaml:"container_port"`
	// Protocol is "tcp" (default when empty), "udp" or "sctp".
	Protocol string `json:"protocol,omitempty" yaml:"protocol,omitempty"`
}

// MountType is the kind of a Mount.
type MountType string

// The mount types.
const (
	// MountBind mounts a host path.
	MountBind MountType = "bind"
	// MountVolume mounts a named Docker volume, created if missing.
	MountVolume MountType = "volume"
)

// Mount is a bind mount or a named volume.
type Mount struct {
	// Type is MountBind or MountVolume.
	Type MountType `json:"type" yaml:"type"`
	// Source is an absolute host path (bind) or a volume name (volume).
	Source string `json:"source" yaml:"source"`
	// Target is the absolute path inside the container.
	Target string `json:"target" yaml:"target"`
	// ReadOnly mounts it read-only.
	ReadOnly bool `json:"read_only,omitempty" yaml:"read_only,omitempty"`
}

// GPURequest asks Docker for GPUs. Set one of All, Count or DeviceIDs.
type GPURequest struct {
	// All requests every GPU of the host.
	All bool `json:"all,omitempty" yaml:"all,omitempty"`
	// Count requests this many GPUs.
	Count int `json:"count,omitempty" yaml:"count,omitempty"`
	// DeviceIDs requests these GPUs by index or UUID.
	DeviceIDs []string `json:"device_ids,omitempty" yaml:"device_ids,omitempty"`
	// Driver is the device driver; empty means DefaultGPUDriver.
	Driver string `json:"driver,omitempty" yaml:"driver,omitempty"`
}

// IsZero reports whether the request asks for no GPU.
func (g GPURequest) IsZero() bool {
	return !g.All && g.Count == 0 && len(g.DeviceIDs) == 0 && g.Driver == ""
}

// RestartPolicy is Docker's restart policy.
type RestartPolicy struct {
	// Name is "no", "always", "unless-stopped" or "on-failure"; empty means "no".
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// MaxRetries bounds the restarts of "on-failure"; 0 means unbounded.
	MaxRetries int `json:"max_retries,omitempty" yaml:"max_retries,omitempty"`
}

// Ulimit is one resource limit.
type Ulimit struct {
	// Name is the limit without the RLIMIT_ prefix, lower case: "nofile", "memlock", ...
	Name string `json:"name" yaml:"name"`
	// Soft is the soft limit; -1 means unlimited.
	Soft int64 `json:"soft" yaml:"soft"`
	// Hard is the hard limit; -1 means unlimited.
	Hard int64 `json:"hard" yaml:"hard"`
}

// PullPolicy says when an image may be pulled.
type PullPolicy string

// The pull policies.
const (
	// PullMissing pulls the image when it is not present (the default).
	PullMissing PullPolicy = "missing"
	// PullNever never pulls: a missing image is an error.
	PullNever PullPolicy = "never"
)

var (
	containerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	envKeyRE        = regexp.MustCompile(`^[^=\x00]+$`)
	ulimitNames     = []string{"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}
	restartNames    = []string{"", "no", "always", "unless-stopped", "on-failure"}
)

// Validate checks the spec; each error names the field and the bad value.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Name == "" {
		bad("name: required")
	} else if !containerNameRE.MatchString(s.Name) {
		bad("name: %q is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", s.Name)
	}
	if strings.TrimSpace(s.Image) == "" {
		bad("image: required")
	} else if strings.ContainsAny(s.Image, " \t\n") {
		bad("image: %q contains white space", s.Image)
	}
	if s.WorkingDir != "" && !path.IsAbs(s.WorkingDir) {
		bad("working_dir: %q is not an absolute path", s.WorkingDir)
	}
	for k := range s.Env {
		if !envKeyRE.MatchString(k) {
			bad("env: key %q is not a valid variable name", k)
		}
	}
	for i, p := range s.Ports {
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			bad("ports[%d].container_port: %d is out of range 1-65535", i, p.ContainerPort)
		}
		if p.HostPort < 0 || p.HostPort > 65535 {
			bad("ports[%d].host_port: %d is out of range 0-65535", i, p.HostPort)
		}
		switch p.Protocol {
		case "", "tcp", "udp", "sctp":
		default:
			bad("ports[%d].protocol: %q is not tcp, udp or sctp", i, p.Protocol)
		}
		if p.HostIP != "" && !isIP(p.HostIP) {
			bad("ports[%d].host_ip: %q is not an IP address", i, p.HostIP)
		}
	}
	for i, m := range s.Mounts {
		switch m.Type {
		case MountBind:
			if !path.IsAbs(m.Source) {
				bad("mounts[%d].source: %q is not an absolute host path", i, m.Source)
			}
		case MountVolume:
			if m.Source == "" || strings.ContainsAny(m.Source, "/") {
				bad("mounts[%d].source: %q is not a volume name", i, m.Source)
			}
		default:
			bad("mounts[%d].type: %q is not bind or volume", i, m.Type)
		}
		if strings.Contains(m.Source, ":") {
			bad("mounts[%d].source: %q contains ':'", i, m.Source)
		}
		if !path.IsAbs(m.Target) || strings.Contains(m.Target, ":") {
			bad("mounts[%d].target: %q is not an absolute container path without ':'", i, m.Target)
		}
	}
	g := s.GPUs
	set := 0
	for _, b := range []bool{g.All, g.Count != 0, len(g.DeviceIDs) > 0} {
		if b {
			set++
		}
	}
	if set > 1 {
		bad("gpus: set only one of all, count and device_ids")
	}
	if g.Count < 0 {
		bad("gpus.count: %d is negative", g.Count)
	}
	if g.Driver != "" && set == 0 {
		bad("gpus.driver: %q is set but no GPU is requested", g.Driver)
	}
	for i, id := range g.DeviceIDs {
		if strings.TrimSpace(id) == "" || strings.Contains(id, ",") {
			bad("gpus.device_ids[%d]: %q is not a GPU index or UUID", i, id)
		}
	}
	if !slices.Contains(restartNames, s.RestartPolicy.Name) {
		bad("restart_policy.name: %q is not no, always, unless-stopped or on-failure", s.RestartPolicy.Name)
	}
	if s.RestartPolicy.MaxRetries < 0 {
		bad("restart_policy.max_retries: %d is negative", s.RestartPolicy.MaxRetries)
	} else if s.RestartPolicy.MaxRetries > 0 && s.RestartPolicy.Name != "on-failure" {
		bad("restart_policy.max_retries: only valid with on-failure, not %q", s.RestartPolicy.Name)
	}
	if s.ShmSize < 0 {
		bad("shm_size: %d is negative", s.ShmSize)
	}
	seen := map[string]bool{}
	for i, u := range s.Ulimits {
		if !slices.Contains(ulimitNames, u.Name) {
			bad("ulimits[%d].name: %q is not a known limit", i, u.Name)
		}
		if seen[u.Name] {
			bad("ulimits[%d].name: %q appears twice", i, u.Name)
		}
		seen[u.Name] = true
		if u.Soft < -1 || u.Hard < -1 || (u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard)) {
			bad("ulimits[%d]: soft %d and hard %d are not 0 <= soft <= hard (-1 unlimited)", i, u.Soft, u.Hard)
		}
	}
	switch s.NetworkMode {
	case "", "bridge", "host", "none":
	default:
		bad("network_mode: %q is not bridge, host or none", s.NetworkMode)
	}
	if s.NetworkMode == "host" || s.NetworkMode == "none" {
		if len(s.Ports) > 0 {
			bad("ports: cannot publish ports with network_mode %q", s.NetworkMode)
		}
	}
	switch s.PullPolicy {
	case "", PullMissing, PullNever:
	default:
		bad("pull_policy: %q is not missing or never", s.PullPolicy)
	}
	if s.StopTimeout < 0 {
		bad("stop_timeout: %s is negative", s.StopTimeout)
	} else if s.StopTimeout%time.Second != 0 {
		bad("stop_timeout: %s is not whole seconds", s.StopTimeout)
	}
	for k := range s.Labels {
		if strings.HasPrefix(k, LabelPrefix) {
			bad("labels: key %q uses the reserved prefix %q", k, LabelPrefix)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid service spec: %w", errors.Join(errs...))
	}
	return nil
}

func isIP(s string) bool { return net.ParseIP(s) != nil }

// EffectiveStopTimeout returns StopTimeout or DefaultStopTimeout.
func (s Spec) EffectiveStopTimeout() time.Duration {
	if s.StopTimeout > 0 {
		return s.StopTimeout
	}
	return DefaultStopTimeout
}

// hashVersion is part of every hash: bump it when the meaning of a field
// changes, so containers made under the old meaning are recreated.
const hashVersion = "v1"

// Hash returns a stable hex digest of everything in the spec that shapes the
// container. Equal specs give equal hashes on every node and across
// restarts; PullPolicy is left out, since it does not change the container.
func (s Spec) Hash() string {
	c := s
	c.PullPolicy = ""
	// Empty and nil collections mean the same; normalise them, and order
	// lists whose order does not matter to Docker.
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if len(c.Command) == 0 {
		c.Command = nil
	}
	if len(c.Entrypoint) == 0 {
		c.Entrypoint = nil
	}
	c.Ports = slices.Clone(c.Ports)
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = "tcp"
		}
	}
	slices.SortFunc(c.Ports, func(a, b PortBinding) int {
		return strings.Compare(fmt.Sprintf("%05d/%s %s:%05d", a.ContainerPort, a.Protocol, a.HostIP, a.HostPort),
			fmt.Sprintf("%05d/%s %s:%05d", b.ContainerPort, b.Protocol, b.HostIP, b.HostPort))
	})
	if len(c.Ports) == 0 {
		c.Ports = nil
	}
	c.Ulimits = slices.Clone(c.Ulimits)
	slices.SortFunc(c.Ulimits, func(a, b Ulimit) int { return strings.Compare(a.Name, b.Name) })
	if len(c.Ulimits) == 0 {
		c.Ulimits = nil
	}
	if len(c.Mounts) == 0 {
		c.Mounts = nil
	}
	if !c.GPUs.IsZero() && c.GPUs.Driver == "" {
		c.GPUs.Driver = DefaultGPUDriver
	}
	if len(c.GPUs.DeviceIDs) == 0 {
		c.GPUs.DeviceIDs = nil
	}
	if c.RestartPolicy.Name == "no" {
		c.RestartPolicy.Name = ""
	}
	if c.NetworkMode == "bridge" {
		c.NetworkMode = ""
	}
	c.StopTimeout = c.EffectiveStopTimeout()
	// encoding/json writes map keys sorted and struct fields in order, so
	// the encoding is canonical.
	// A Spec holds only strings, numbers, bools, slices and string maps:
	// Marshal cannot fail on it.
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(append([]byte(hashVersion+"\n"), b...))
	return hex.EncodeToString(sum[:16])
}
