package runtime

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func validSpec() Spec {
	return Spec{Name: "svc", Image: "newbieha/stub-model:dev"}
}

func TestSpecValidate(t *testing.T) {
	if err := validSpec().Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"no name", func(s *Spec) { s.Name = "" }, "name: required"},
		{"bad name", func(s *Spec) { s.Name = "/x y" }, `name: "/x y"`},
		{"no image", func(s *Spec) { s.Image = "" }, "image: required"},
		{"relative workdir", func(s *Spec) { s.WorkingDir = "work" }, "working_dir"},
		{"env key", func(s *Spec) { s.Env = map[string]string{"A=B": "x"} }, `env: key "A=B"`},
		{"container port", func(s *Spec) { s.Ports = []PortBinding{{ContainerPort: 0}} }, "ports[0].container_port"},
		{"host port", func(s *Spec) { s.Ports = []PortBinding{{ContainerPort: 1, HostPort: 70000}} }, "ports[0].host_port"},
		{"protocol", func(s *Spec) { s.Ports = []PortBinding{{ContainerPort: 1, Protocol: "icmp"}} }, "ports[0].protocol"},
		{"host ip", func(s *Spec) { s.Ports = []PortBinding{{ContainerPort: 1, HostIP: "localhost"}} }, "ports[0].host_ip"},
		{"bind relative", func(s *Spec) { s.Mounts = []Mount{{Type: MountBind, Source: "models", Target: "/m"}} }, "mounts[0].source"},
		{"volume with slash", func(s *Spec) { s.Mounts = []Mount{{Type: MountVolume, Source: "a/b", Target: "/m"}} }, "mounts[0].source"},
		{"mount type", func(s *Spec) { s.Mounts = []Mount{{Type: "tmpfs", Source: "x", Target: "/m"}} }, "mounts[0].type"},
		{"mount target", func(s *Spec) { s.Mounts = []Mount{{Type: MountBind, Source: "/x", Target: "m"}} }, "mounts[0].target"},
		{"gpu two ways", func(s *Spec) { s.GPUs = GPURequest{All: true, Count: 1} }, "gpus: set only one"},
		{"gpu negative", func(s *Spec) { s.GPUs = GPURequest{Count: -2} }, "gpus.count"},
		{"gpu driver only", func(s *Spec) { s.GPUs = GPURequest{Driver: "nvidia"} }, "gpus.driver"},
		{"gpu id", func(s *Spec) { s.GPUs = GPURequest{DeviceIDs: []string{"0,1"}} }, "gpus.device_ids[0]"},
		{"restart", func(s *Spec) { s.RestartPolicy.Name = "sometimes" }, "restart_policy.name"},
		{"retries", func(s *Spec) { s.RestartPolicy = RestartPolicy{Name: "always", MaxRetries: 3} }, "restart_policy.max_retries"},
		{"shm", func(s *Spec) { s.ShmSize = -1 }, "shm_size"},
		{"ulimit name", func(s *Spec) { s.Ulimits = []Ulimit{{Name: "files", Soft: 1, Hard: 1}} }, "ulimits[0].name"},
		{"ulimit order", func(s *Spec) { s.Ulimits = []Ulimit{{Name: "nofile", Soft: 2, Hard: 1}} }, "ulimits[0]"},
		{"ulimit twice", func(s *Spec) {
			s.Ulimits = []Ulimit{{Name: "nofile", Soft: 1, Hard: 1}, {Name: "nofile", Soft: 1, Hard: 1}}
		}, "ulimits[1].name"},
		{"network", func(s *Spec) { s.NetworkMode = "container:x" }, "network_mode"},
		{"host net ports", func(s *Spec) { s.NetworkMode = "host"; s.Ports = []PortBinding{{ContainerPort: 1}} }, "ports: cannot publish"},
		{"pull", func(s *Spec) { s.PullPolicy = "always" }, "pull_policy"},
		{"stop timeout", func(s *Spec) { s.StopTimeout = 1500 * time.Millisecond }, "stop_timeout"},
		{"reserved label", func(s *Spec) { s.Labels = map[string]string{LabelNode: "x"} }, "labels: key \"io.newbieha.node\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := validSpec()
			c.mod(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func fullSpec() Spec {
	return Spec{
		Name:          "svc",
		Image:         "img:1",
		Command:       []string{"serve", "--port", "8080"},
		Env:           map[string]string{"A": "1", "B": "2"},
		Ports:         []PortBinding{{ContainerPort: 8080, HostPort: 8080}, {ContainerPort: 9090, HostIP: "127.0.0.1", Protocol: "udp"}},
		Mounts:        []Mount{{Type: MountBind, Source: "/srv/models", Target: "/models", ReadOnly: true}},
		GPUs:          GPURequest{All: true},
		RestartPolicy: RestartPolicy{Name: "unless-stopped"},
		Ulimits:       []Ulimit{{Name: "nofile", Soft: 1024, Hard: 4096}, {Name: "memlock", Soft: -1, Hard: -1}},
		Labels:        map[string]string{"app": "x"},
	}
}

func TestSpecHash(t *testing.T) {
	a := fullSpec()
	h := a.Hash()
	if len(h) != 32 {
		t.Fatalf("hash %q is not 32 hex digits", h)
	}
	// Equivalent forms hash the same.
	same := map[string]func(*Spec){
		"ports reordered": func(s *Spec) {
			s.Ports = []PortBinding{s.Ports[1], {ContainerPort: 8080, HostPort: 8080, Protocol: "tcp"}}
		},
		"ulimits reordered": func(s *Spec) { s.Ulimits = []Ulimit{s.Ulimits[1], s.Ulimits[0]} },
		"pull policy":       func(s *Spec) { s.PullPolicy = PullNever },
		"default driver":    func(s *Spec) { s.GPUs.Driver = DefaultGPUDriver },
		"default stop":      func(s *Spec) { s.StopTimeout = DefaultStopTimeout },
		"empty maps":        func(s *Spec) {},
	}
	for name, mod := range same {
		b := fullSpec()
		mod(&b)
		if b.Hash() != h {
			t.Errorf("%s: hash changed", name)
		}
	}
	e1, e2 := validSpec(), validSpec()
	e2.Env, e2.Labels, e2.Ports = map[string]string{}, map[string]string{}, []PortBinding{}
	e2.RestartPolicy.Name = "no"
	e2.NetworkMode = "bridge"
	if e1.Hash() != e2.Hash() {
		t.Error("nil and empty collections hash differently")
	}
	// Any real change changes the hash.
	diff := map[string]func(*Spec){
		"image":   func(s *Spec) { s.Image = "img:2" },
		"env":     func(s *Spec) { s.Env["A"] = "2" },
		"command": func(s *Spec) { s.Command = []string{"serve"} },
		"port":    func(s *Spec) { s.Ports[0].HostPort = 8081 },
		"mount":   func(s *Spec) { s.Mounts[0].ReadOnly = false },
		"gpus":    func(s *Spec) { s.GPUs = GPURequest{Count: 1} },
		"restart": func(s *Spec) { s.RestartPolicy.Name = "always" },
		"label":   func(s *Spec) { s.Labels["app"] = "y" },
		"stop":    func(s *Spec) { s.StopTimeout = 30 * time.Second },
		"name":    func(s *Spec) { s.Name = "svc2" },
	}
	for name, mod := range diff {
		b := fullSpec()
		mod(&b)
		if b.Hash() == h {
			t.Errorf("%s: hash did not change", name)
		}
	}
}

// TestSpecHash_Golden pins the hash of a fixed spec. If this fails, an
// upgraded agent would recreate every running model container: bump
// hashVersion on purpose, or restore the old encoding.
func TestSpecHash_Golden(t *testing.T) {
	const want = "6e25524ea1cff1ad3c059cf20048a1e2"
	if got := fullSpec().Hash(); got != want {
		t.Fatalf("Hash() = %s, want %s", got, want)
	}
}

// TestSpec_Encodings: a Spec embeds in YAML settings (strict decoding) and
// survives a JSON round trip (the replicated settings).
func TestSpec_Encodings(t *testing.T) {
	src := `
name: model
image: newbieha/stub-model:dev
command: [--node, n1]
env: {NODE_NAME: n1}
ports:
  - {host_ip: 127.0.0.1, host_port: 8080, container_port: 8080}
mounts:
  - {type: bind, source: /srv/models, target: /models, read_only: true}
gpus: {all: true}
restart_policy: {name: unless-stopped}
shm_size: 1073741824
ulimits:
  - {name: memlock, soft: -1, hard: -1}
stop_timeout: 30s
pull_policy: never
labels: {team: ml}
`
	var s Spec
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.StopTimeout != 30*time.Second || !s.GPUs.All || s.Mounts[0].Type != MountBind || s.Ports[0].HostPort != 8080 {
		t.Fatalf("decoded %+v", s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) || back.Hash() != s.Hash() {
		t.Fatalf("json round trip:\n got %+v\nwant %+v", back, s)
	}
	out, err := yaml.Marshal(validSpec())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "gpus") || strings.Contains(string(out), "restart_policy") {
		t.Fatalf("zero optional structs are written out:\n%s", out)
	}
}
