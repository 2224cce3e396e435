package health

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfig_YAMLAndDefaults(t *testing.T) {
	const doc = `
checks:
  - name: health
    kind: http
    required: true
    http:
      url: http://127.0.0.1:8080/health
  - name: generate
    kind: http-generate
    interval: 1m
    timeout: 45s
    http:
      url: http://127.0.0.1:8080/generate
  - name: model
    kind: container
    required: true
    container:
      ignore_restarts: true
  - name: gpu
    kind: gpu
    required: true
    rise: 3
    fall: 1
    gpu:
      expected_devices: 2
      max_temperature_c: 85
      max_ecc_uncorrected: -1
      min_free_memory_mib: 1024
      critical_xids: [79]
      xid_window: 10m
  - name: script
    kind: exec
    exec:
      command: ["sh", "-c", "exit 0"]
      env: ["A=b"]
      output_limit: 100
`
	var cfg Config
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	h := cfg.Checks[0]
	if h.Interval != time.Second || h.Timeout != 800*time.Millisecond || h.Rise != 2 || h.Fall != 2 || !h.Required {
		t.Fatalf("http defaults: %+v", h)
	}
	if h.HTTP.Method != "GET" || h.HTTP.ExpectStatus != 200 || h.HTTP.Body != "" || h.HTTP.ExpectContentType != "" {
		t.Fatalf("http section defaults: %+v", *h.HTTP)
	}
	g := cfg.Checks[1]
	if g.Interval != time.Minute || g.Timeout != 45*time.Second || g.Rise != 1 || g.Fall != 2 {
		t.Fatalf("http-generate timings: %+v", g)
	}
	if g.HTTP.Method != "POST" || g.HTTP.Body != `{"prompt":"health"}` || g.HTTP.ContentType != "application/json" || g.HTTP.ExpectContentType != "image/png" {
		t.Fatalf("http-generate section defaults: %+v", *g.HTTP)
	}
	if c := cfg.Checks[2]; !c.Container.IgnoreRestarts || c.Container.IgnoreDockerHealth {
		t.Fatalf("container section: %+v", *c.Container)
	}
	gp := cfg.Checks[3]
	want := GPUConfig{ExpectedDevices: 2, MaxTemperatureC: 85, MaxECCUncorrected: -1, MaxRetiredPages: DefaultMaxRetiredPages,
		MinFreeMemoryMiB: 1024, CriticalXids: []uint64{79}, XidWindow: 10 * time.Minute}
	if gp.Rise != 3 || gp.Fall != 1 || gp.GPU.ExpectedDevices != want.ExpectedDevices || gp.GPU.MaxTemperatureC != want.MaxTemperatureC ||
		gp.GPU.MaxECCUncorrected != want.MaxECCUncorrected || gp.GPU.MaxRetiredPages != want.MaxRetiredPages ||
		gp.GPU.MinFreeMemoryMiB != want.MinFreeMemoryMiB || len(gp.GPU.CriticalXids) != 1 || gp.GPU.XidWindow != want.XidWindow {
		t.Fatalf("gpu section: %+v", *gp.GPU)
	}
	e := cfg.Checks[4]
	if e.Exec.OutputLimit != 100 || e.Exec.Command[0] != "sh" || e.Exec.Env[0] != "A=b" || e.Timeout != time.Second {
		t.Fatalf("exec: %+v %+v", e, *e.Exec)
	}
}

func TestConfig_WithDefaultsDoesNotShare(t *testing.T) {
	in := Config{Checks: []CheckConfig{
		{Name: "x", Kind: KindExec, Exec: &ExecConfig{Command: []string{"true"}}},
		{Name: "g", Kind: KindGPU},
	}}
	out := in.WithDefaults()
	out.Checks[0].Exec.Command[0] = "false"
	out.Checks[0].Exec.OutputLimit = 7
	if in.Checks[0].Exec.Command[0] != "true" || in.Checks[0].Exec.OutputLimit != 0 {
		t.Fatal("WithDefaults shares the exec section with its input")
	}
	if in.Checks[1].GPU != nil || out.Checks[1].GPU.MaxTemperatureC != DefaultMaxTemperatureC {
		t.Fatal("gpu section defaults")
	}
	// Idempotent.
	again := out.WithDefaults()
	if again.Checks[1].GPU.XidWindow != out.Checks[1].GPU.XidWindow || again.Checks[0].Exec.OutputLimit != 7 {
		t.Fatal("WithDefaults is not idempotent")
	}
}

func TestConfig_ValidateNamesTheField(t *testing.T) {
	good := func() CheckConfig {
		return CheckConfig{Name: "health", Kind: KindHTTP, Interval: time.Second, Timeout: 500 * time.Millisecond,
			Rise: 1, Fall: 1, HTTP: &HTTPConfig{URL: "http://127.0.0.1:8080/health", Method: "GET", ExpectStatus: 200}}
	}
	cases := []struct {
		name   string
		mutate func(c *CheckConfig)
		want   string
	}{
		{"zero timeout", func(c *CheckConfig) { c.Timeout = 0 }, "checks[1].timeout: 0s must be > 0"},
		{"timeout not below interval", func(c *CheckConfig) { c.Timeout = time.Second }, "checks[1].timeout: 1s must be < interval (1s)"},
		{"tiny interval", func(c *CheckConfig) { c.Interval = time.Millisecond }, "checks[1].interval: 1ms must be >= 10ms"},
		{"rise zero", func(c *CheckConfig) { c.Rise = 0 }, "checks[1].rise: 0 must be between 1 and 100"},
		{"fall too big", func(c *CheckConfig) { c.Fall = 101 }, "checks[1].fall: 101 must be between 1 and 100"},
		{"bad name", func(c *CheckConfig) { c.Name = "a b" }, `checks[1].name: "a b" must be`},
		{"empty name", func(c *CheckConfig) { c.Name = "" }, `checks[1].name: "" must be`},
		{"unknown kind", func(c *CheckConfig) { c.Kind = "tcp" }, `checks[1].kind: "tcp" is not one of`},
		{"url does not parse", func(c *CheckConfig) { c.HTTP.URL = "http://[::1" }, `checks[1].http.url: "http://[::1" does not parse`},
		{"url scheme", func(c *CheckConfig) { c.HTTP.URL = "ftp://x/" }, `checks[1].http.url: "ftp://x/" must use http or https`},
		{"url host", func(c *CheckConfig) { c.HTTP.URL = "http:///health" }, `checks[1].http.url: "http:///health" has no host`},
		{"url empty", func(c *CheckConfig) { c.HTTP.URL = "" }, "checks[1].http.url: must be set"},
		{"status", func(c *CheckConfig) { c.HTTP.ExpectStatus = 42 }, "checks[1].http.expect_status: 42 must be between 100 and 599"},
		{"method", func(c *CheckConfig) { c.HTTP.Method = "get me" }, `checks[1].http.method: "get me" is not an HTTP method`},
		{"content type", func(c *CheckConfig) { c.HTTP.ExpectContentType = "image/" }, `checks[1].http.expect_content_type: "image/"`},
		{"http section missing", func(c *CheckConfig) { c.HTTP = nil }, "checks[1].http: missing"},
		{"foreign section", func(c *CheckConfig) { c.Exec = &ExecConfig{Command: []string{"true"}, OutputLimit: 1} }, `checks[1].exec: set, but kind is "http"`},
		{"exec without command", func(c *CheckConfig) {
			c.Kind, c.HTTP, c.Exec = KindExec, nil, &ExecConfig{OutputLimit: 10}
		}, "checks[1].exec.command: must name a program"},
		{"exec bad env", func(c *CheckConfig) {
			c.Kind, c.HTTP, c.Exec = KindExec, nil, &ExecConfig{Command: []string{"true"}, Env: []string{"=x"}, OutputLimit: 10}
		}, `checks[1].exec.env[0]: "=x" must be KEY=value`},
		{"exec output limit", func(c *CheckConfig) {
			c.Kind, c.HTTP, c.Exec = KindExec, nil, &ExecConfig{Command: []string{"true"}, OutputLimit: MaxOutput + 1}
		}, "checks[1].exec.output_limit: 65537 must be between 1 and 65536"},
		{"gpu device count", func(c *CheckConfig) {
			c.Kind, c.HTTP, c.GPU = KindGPU, nil, &GPUConfig{ExpectedDevices: -1}
		}, "checks[1].gpu.expected_devices: -1 must be between 0 and 64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := good()
			c.mutate(&ch)
			cfg := Config{Checks: []CheckConfig{good(), ch}}
			cfg.Checks[0].Name = "first"
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, c.want)
			}
		})
	}
	if err := (Config{Checks: []CheckConfig{good()}}).Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	dup := Config{Checks: []CheckConfig{good(), good()}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), `checks[1].name: "health" already used by checks[0]`) {
		t.Fatalf("duplicate names: %v", err)
	}
	// Every problem is reported, not just the first.
	bad := good()
	bad.Rise, bad.Fall = 0, 0
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "check.rise") || !strings.Contains(err.Error(), "check.fall") {
		t.Fatalf("joined errors: %v", err)
	}
}

func TestNew_RejectsMissingDeps(t *testing.T) {
	for _, c := range []struct {
		cc   CheckConfig
		want string
	}{
		{CheckConfig{Name: "model", Kind: KindContainer}, "checks[0] (container:model): a container check needs Deps.Container"},
		{CheckConfig{Name: "gpu", Kind: KindGPU}, "checks[0] (gpu:gpu): a gpu check needs Deps.GPU"},
	} {
		_, err := New(Config{Checks: []CheckConfig{c.cc}}, Deps{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("New = %v, want %q", err, c.want)
		}
	}
	_, err := New(Config{Checks: []CheckConfig{{Name: "x", Kind: KindHTTP, Timeout: -1}}}, Deps{})
	if err == nil || !strings.Contains(err.Error(), "health config: checks[0].timeout: -1ns must be > 0") {
		t.Fatalf("New with a bad config = %v", err)
	}
}

func TestNewProber(t *testing.T) {
	if _, err := NewProber(CheckConfig{Name: "gpu", Kind: KindGPU}, Deps{}); err == nil || err.Error() != "gpu:gpu: a gpu check needs Deps.GPU" {
		t.Fatalf("missing dep: %v", err)
	}
	if _, err := NewProber(CheckConfig{Name: "x", Kind: KindExec}, Deps{}); err == nil || !strings.Contains(err.Error(), "check.exec.command: must name a program") {
		t.Fatalf("invalid check: %v", err)
	}
	p, err := NewProber(CheckConfig{Name: "x", Kind: KindExec, Exec: &ExecConfig{Command: []string{"true"}}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Probe(t.Context()); !s.OK {
		t.Fatalf("true: %+v", s)
	}
}
