package runtime

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeCompose writes a compose file into a fresh directory and returns its path.
func writeCompose(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadCompose_Seed imports the compose file of the Keepalived
// deployment newbieha replaces (testdata/seed-compose.yml, a copy of
// shared/fixtures/seed-compose.yml).
func TestLoadCompose_Seed(t *testing.T) {
	src, err := os.ReadFile("testdata/seed-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	p := writeCompose(t, string(src))
	dir := filepath.Dir(p)
	got, err := LoadCompose(context.Background(), p, "newbie-image")
	if err != nil {
		t.Fatalf("LoadCompose: %v", err)
	}
	want := Spec{
		Name:       "newbie-image",
		Image:      "csdn/newbie-image-exp0.1:latest",
		Command:    []string{"python", "create.py"},
		WorkingDir: "/workspace/NewBie-image-Exp0.1",
		Env:        map[string]string{"NVIDIA_VISIBLE_DEVICES": "all"},
		Ports:      []PortBinding{{HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"}},
		Mounts: []Mount{
			{Type: MountBind, Source: filepath.Join(dir, "models"), Target: "/workspace/NewBie-image-Exp0.1/models"},
			{Type: MountBind, Source: filepath.Join(dir, "output"), Target: "/workspace/NewBie-image-Exp0.1/output"},
		},
		Privileged:    true,
		Runtime:       "nvidia",
		RestartPolicy: RestartPolicy{Name: "unless-stopped"},
		PullPolicy:    PullMissing,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("seed spec mismatch:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadCompose_Full(t *testing.T) {
	p := writeCompose(t, `
name: demo
services:
  model:
    image: newbieha/stub-model:dev
    user: "1000:1000"
    entrypoint: /stub-model
    command: --node n1 --listen :9000
    env_file: model.env
    environment:
      FROM_MAP: "x"
      INTERPOLATED: ${NBHA_TEST_VAR:-fallback}
    ports:
      - "127.0.0.1:18080:9000"
      - target: 9001
        protocol: udp
    volumes:
      - type: bind
        source: ./models
        target: /models
        read_only: true
      - data:/data
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              device_ids: ["0", "GPU-abc"]
              capabilities: [gpu]
    shm_size: 2gb
    ulimits:
      memlock: -1
      nofile:
        soft: 1024
        hard: 4096
    restart: on-failure:3
    labels:
      team: ml
    stop_grace_period: 1m30s
    pull_policy: never
    x-notes: extension keys are ignored
volumes:
  data: {}
`)
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), "model.env"), []byte("FROM_FILE=y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCompose(context.Background(), p, "model")
	if err != nil {
		t.Fatalf("LoadCompose: %v", err)
	}
	want := Spec{
		Name:       "model",
		Image:      "newbieha/stub-model:dev",
		User:       "1000:1000",
		Entrypoint: []string{"/stub-model"},
		Command:    []string{"--node", "n1", "--listen", ":9000"},
		Env:        map[string]string{"FROM_MAP": "x", "FROM_FILE": "y", "INTERPOLATED": "fallback"},
		Ports: []PortBinding{
			{HostIP: "127.0.0.1", HostPort: 18080, ContainerPort: 9000, Protocol: "tcp"},
			{ContainerPort: 9001, Protocol: "udp"},
		},
		Mounts: []Mount{
			{Type: MountBind, Source: filepath.Join(filepath.Dir(p), "models"), Target: "/models", ReadOnly: true},
			{Type: MountVolume, Source: "demo_data", Target: "/data"},
		},
		GPUs:          GPURequest{DeviceIDs: []string{"0", "GPU-abc"}, Driver: "nvidia"},
		ShmSize:       2 << 30,
		Ulimits:       []Ulimit{{Name: "memlock", Soft: -1, Hard: -1}, {Name: "nofile", Soft: 1024, Hard: 4096}},
		RestartPolicy: RestartPolicy{Name: "on-failure", MaxRetries: 3},
		Labels:        map[string]string{"team": "ml"},
		StopTimeout:   90 * time.Second,
		PullPolicy:    PullNever,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("spec mismatch:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadCompose_GPUForms(t *testing.T) {
	cases := []struct {
		name, devices string
		want          GPURequest
	}{
		{"all", "count: all\n              capabilities: [gpu]", GPURequest{All: true}},
		{"count", "count: 2\n              capabilities: [gpu]\n              driver: nvidia", GPURequest{Count: 2, Driver: "nvidia"}},
		{"implicit all", "capabilities: [gpu]", GPURequest{All: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeCompose(t, `
services:
  m:
    image: img
    deploy:
      resources:
        reservations:
          devices:
            - `+c.devices+"\n")
			got, err := LoadCompose(context.Background(), p, "m")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.GPUs, c.want) {
				t.Fatalf("GPUs = %+v, want %+v", got.GPUs, c.want)
			}
		})
	}
}

func TestLoadCompose_GPUsAttribute(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want GPURequest
	}{
		{"    gpus: all\n", GPURequest{All: true}},
		{"    gpus:\n      - driver: nvidia\n        count: 1\n", GPURequest{Count: 1, Driver: "nvidia"}},
	} {
		p := writeCompose(t, "services:\n  m:\n    image: img\n"+c.yaml)
		got, err := LoadCompose(context.Background(), p, "m")
		if err != nil {
			t.Fatalf("%s: %v", c.yaml, err)
		}
		if !reflect.DeepEqual(got.GPUs, c.want) {
			t.Fatalf("%s: GPUs = %+v, want %+v", c.yaml, got.GPUs, c.want)
		}
	}
}

func TestLoadCompose_Unsupported(t *testing.T) {
	cases := []struct {
		name, service, want string
	}{
		{"build", "    build: .\n", `compose service "m": key "build" is not supported`},
		{"healthcheck", "    healthcheck:\n      test: [\"CMD\", \"true\"]\n", `key "healthcheck" is not supported`},
		{"two keys", "    build: .\n    cap_add: [NET_ADMIN]\n", `keys "build", "cap_add" are not supported`},
		{"deploy replicas", "    deploy:\n      replicas: 2\n", `key "deploy.replicas" is not supported`},
		{"cpu limit", "    deploy:\n      resources:\n        limits:\n          cpus: '2'\n", `key "deploy.resources.limits" is not supported`},
		{"device options", "    deploy:\n      resources:\n        reservations:\n          devices:\n            - capabilities: [gpu]\n              options: {a: b}\n", `key "deploy.resources.reservations.devices[].options" is not supported`},
		{"port name", "    ports:\n      - target: 80\n        name: web\n", `key "ports[].name" is not supported`},
		{"bind propagation", "    volumes:\n      - type: bind\n        source: /x\n        target: /y\n        bind:\n          propagation: shared\n", `key "volumes[].bind.propagation" is not supported`},
		{"tmpfs volume", "    volumes:\n      - type: tmpfs\n        target: /t\n", `key "volumes[0].type": "tmpfs" is not supported`},
		{"anonymous volume", "    volumes:\n      - /data\n", `anonymous volume "/data"`},
		{"volume nocopy", "    volumes:\n      - type: volume\n        source: d\n        target: /d\n        volume:\n          nocopy: true\n", `key "volumes[].volume.nocopy" is not supported`},
		{"networks", "    networks: [front]\n", `key "networks" is not supported`},
		{"network mode", "    network_mode: container:abc\n", `key "network_mode"`},
		{"restart", "    restart: always:3\n", `key "restart"`},
		{"pull always", "    pull_policy: always\n", `key "pull_policy"`},
		{"port range", "    ports:\n      - \"8000-8001:8000\"\n", `key "ports[0].published"`},
		{"reserved label", "    labels:\n      io.newbieha.node: x\n", `labels: key "io.newbieha.node"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			extra := ""
			switch c.name {
			case "networks":
				extra = "networks:\n  front: {}\n"
			case "volume nocopy":
				extra = "volumes:\n  d: {}\n"
			}
			p := writeCompose(t, "services:\n  m:\n    image: img\n"+c.service+extra)
			_, err := LoadCompose(context.Background(), p, "m")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadCompose = %v, want an error containing %s", err, c.want)
			}
		})
	}
}

func TestLoadCompose_OtherServicesAndVolumes(t *testing.T) {
	// Unsupported keys of other services do not matter; those of a named
	// volume the service uses do.
	p := writeCompose(t, `
services:
  m:
    image: img
    volumes: [nfs:/models]
  web:
    build: .
volumes:
  nfs:
    driver_opts: {type: nfs, o: "addr=10.0.0.1", device: ":/export"}
`)
	_, err := LoadCompose(context.Background(), p, "m")
	if err == nil || !strings.Contains(err.Error(), `"volumes.nfs.driver_opts (top level)" is not supported`) || strings.Contains(err.Error(), "build") {
		t.Fatalf("LoadCompose = %v, want only the volume's driver_opts named", err)
	}
}

func TestLoadCompose_Errors(t *testing.T) {
	p := writeCompose(t, "services:\n  m:\n    image: img\n")
	if _, err := LoadCompose(context.Background(), p, "x"); err == nil || !strings.Contains(err.Error(), `no service "x" (services: m)`) {
		t.Fatalf("missing service: %v", err)
	}
	if _, err := LoadCompose(context.Background(), filepath.Join(t.TempDir(), "nope.yml"), "m"); err == nil {
		t.Fatal("missing file loaded")
	}
	p = writeCompose(t, "services:\n  m:\n    build: .\n")
	if _, err := LoadCompose(context.Background(), p, "m"); err == nil || !strings.Contains(err.Error(), `"build"`) {
		t.Fatalf("build only: %v", err)
	}
	p = writeCompose(t, "services:\n  m:\n    image: img\n    bogus: 1\n")
	if _, err := LoadCompose(context.Background(), p, "m"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("schema error: %v", err)
	}
}
