package health

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Kind names a check type.
type Kind string

// The check kinds.
const (
	// KindHTTP requests a URL (GET by default) and expects a status code.
	KindHTTP Kind = "http"
	// KindHTTPGenerate is the end-to-end probe: POST a tiny prompt to the
	// model and expect an image back. It runs at its own, slower interval.
	KindHTTPGenerate Kind = "http-generate"
	// KindContainer reads the workload container's state from the runtime.
	KindContainer Kind = "container"
	// KindGPU reads GPU telemetry through a GPUProbe and applies thresholds.
	KindGPU Kind = "gpu"
	// KindExec runs a command whose exit status decides (Keepalived's
	// vrrp_script).
	KindExec Kind = "exec"
)

// String returns the kind's name.
func (k Kind) String() string { return string(k) }

// Kinds lists every check kind, in documentation order.
var Kinds = []Kind{KindHTTP, KindHTTPGenerate, KindContainer, KindGPU, KindExec}

// Limits on configuration values.
const (
	// MinInterval keeps a misconfigured check from spinning.
	MinInterval = 10 * time.Millisecond
	// MaxRiseFall bounds rise and fall; beyond it a check would take too
	// long to change state to be useful.
	MaxRiseFall = 100
	// MaxOutput bounds Result.Output and an exec check's output_limit.
	MaxOutput = 64 << 10
	// DefaultExecOutput is how much of a command's output is kept: its
	// last 4 KiB.
	DefaultExecOutput = 4 << 10
)

// DefaultGeneratePrompt is the body of the end-to-end probe: the smallest
// prompt the model accepts.
const DefaultGeneratePrompt = `{"prompt":"health"}`

// DefaultCriticalXids are the Xid numbers that fail a GPU check by default.
// Our reading of NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors):
// 48 double-bit ECC, 61/62 internal micro-controller halt, 64 row-remap
// failure, 74 NVLink error, 79 GPU fallen off the bus, 95 uncontained ECC
// error, 119/120 GSP timeout/error: each needs at least a GPU reset.
var DefaultCriticalXids = []uint64{48, 61, 62, 64, 74, 79, 95, 119, 120}

// GPU threshold defaults.
const (
	// DefaultMaxTemperatureC is a little above the slowdown temperature of
	// current data-centre GPUs (nvidia-smi -q shows "GPU Slowdown Temp").
	DefaultMaxTemperatureC = 90
	// DefaultMaxRetiredPages is close to the 64 pages the driver can retire
	// on a GPU with dynamic page retirement (pre-Ampere).
	DefaultMaxRetiredPages = 60
	// DefaultXidWindow is how long a critical Xid keeps the check failing.
	DefaultXidWindow = 5 * time.Minute
)

// Config is the health configuration of one agent: its checks.
type Config struct {
	Checks []CheckConfig `yaml:"checks" json:"checks"`
}

// CheckConfig is one check. Zero fields take the kind's defaults
// (WithDefaults); exactly the kind's own section (http, exec, container,
// gpu) may be set.
type CheckConfig struct {
	// Name is unique among the checks: letters, digits, '.', '_', '-'.
	Name string `yaml:"name" json:"name"`
	// Kind is the check type.
	Kind Kind `yaml:"kind" json:"kind"`
	// Interval is the time between the end of one sample and the start of
	// the next.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one sample; it must be shorter than Interval.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// Rise is how many consecutive successes make the check passing.
	Rise int `yaml:"rise" json:"rise"`
	// Fall is how many consecutive failures make the check failing.
	Fall int `yaml:"fall" json:"fall"`
	// Required checks decide Healthy; others are informational.
	Required bool `yaml:"required" json:"required"`

	HTTP      *HTTPConfig      `yaml:"http,omitempty" json:"http,omitempty"`
	Exec      *ExecConfig      `yaml:"exec,omitempty" json:"exec,omitempty"`
	Container *ContainerConfig `yaml:"container,omitempty" json:"container,omitempty"`
	GPU       *GPUConfig       `yaml:"gpu,omitempty" json:"gpu,omitempty"`
}

// HTTPConfig is the section of the http and http-generate kinds.
type HTTPConfig struct {
	// URL is the address to request (http or https).
	URL string `yaml:"url" json:"url"`
	// Method defaults to GET for http and POST for http-generate.
	Method string `yaml:"method,omitempty" json:"method"`
	// Body is the request body; http-generate defaults to
	// DefaultGeneratePrompt.
	Body string `yaml:"body,omitempty" json:"body"`
	// ContentType is the request body's type; "application/json" when a
	// body is sent and nothing is set.
	ContentType string `yaml:"content_type,omitempty" json:"content_type"`
	// ExpectStatus is the status code that counts as success (default 200).
	ExpectStatus int `yaml:"expect_status,omitempty" json:"expect_status"`
	// ExpectContentType, if set, must equal the response's media type
	// (parameters ignored); http-generate defaults to "image/png", and then
	// the body must also start with the PNG signature.
	ExpectContentType string `yaml:"expect_content_type,omitempty" json:"expect_content_type"`
}

// ExecConfig is the section of the exec kind.
type ExecConfig struct {
	// Command is the argv: no shell is involved unless it is given, as in
	// ["sh", "-c", "curl -fsS localhost:8080/health"].
	Command []string `yaml:"command" json:"command"`
	// Env holds extra "KEY=value" entries added to the agent's environment.
	Env []string `yaml:"env,omitempty" json:"env"`
	// Dir is the working directory; empty means the agent's.
	Dir string `yaml:"dir,omitempty" json:"dir"`
	// OutputLimit is how many bytes of combined stdout and stderr are kept
	// (the last ones); default DefaultExecOutput, at most MaxOutput.
	OutputLimit int `yaml:"output_limit,omitempty" json:"output_limit"`
}

// ContainerConfig is the section of the container kind. The zero value
// (or no section) is the strict default.
type ContainerConfig struct {
	// IgnoreRestarts keeps a rising restart count from failing a sample.
	IgnoreRestarts bool `yaml:"ignore_restarts,omitempty" json:"ignore_restarts"`
	// IgnoreDockerHealth ignores the image's own HEALTHCHECK status.
	IgnoreDockerHealth bool `yaml:"ignore_docker_health,omitempty" json:"ignore_docker_health"`
}

// GPUConfig holds the thresholds of the gpu kind. For every limit, zero
// means the default and a negative value turns the limit off.
type GPUConfig struct {
	// ExpectedDevices is the exact device count required; zero means at
	// least one.
	ExpectedDevices int `yaml:"expected_devices,omitempty" json:"expected_devices"`
	// MaxTemperatureC fails a device hotter than this (default
	// DefaultMaxTemperatureC).
	MaxTemperatureC int `yaml:"max_temperature_c,omitempty" json:"max_temperature_c"`
	// MaxECCUncorrected fails a device with more volatile uncorrected ECC
	// errors than this (default 0: any uncorrected error fails).
	MaxECCUncorrected int64 `yaml:"max_ecc_uncorrected,omitempty" json:"max_ecc_uncorrected"`
	// MaxRetiredPages fails a device with more retired pages than this
	// (default DefaultMaxRetiredPages).
	MaxRetiredPages int `yaml:"max_retired_pages,omitempty" json:"max_retired_pages"`
	// MinFreeMemoryMiB fails a device with less free memory than this
	// (default off: an inference server holds most memory on purpose).
	MinFreeMemoryMiB int64 `yaml:"min_free_memory_mib,omitempty" json:"min_free_memory_mib"`
	// IgnorePendingRemap keeps a row remap waiting for a GPU reset from
	// failing the check. A failed remap always fails it.
	IgnorePendingRemap bool `yaml:"ignore_pending_remap,omitempty" json:"ignore_pending_remap"`
	// CriticalXids are the Xid numbers that fail the check; nil means
	// DefaultCriticalXids.
	CriticalXids []uint64 `yaml:"critical_xids,omitempty" json:"critical_xids"`
	// XidWindow is how long after a critical Xid the check keeps failing
	// (default DefaultXidWindow); negative ignores Xid events.
	XidWindow time.Duration `yaml:"xid_window,omitempty" json:"xid_window"`
}

// kindDefaults are the defaults of one kind; see docs/health.md for why.
type kindDefaults struct {
	interval, timeout time.Duration
	rise, fall        int
}

var defaults = map[Kind]kindDefaults{
	KindHTTP:         {interval: time.Second, timeout: 800 * time.Millisecond, rise: 2, fall: 2},
	KindHTTPGenerate: {interval: 30 * time.Second, timeout: 20 * time.Second, rise: 1, fall: 2},
	KindContainer:    {interval: 2 * time.Second, timeout: time.Second, rise: 2, fall: 2},
	KindGPU:          {interval: 5 * time.Second, timeout: 3 * time.Second, rise: 2, fall: 2},
	KindExec:         {interval: 2 * time.Second, timeout: time.Second, rise: 2, fall: 2},
}

// WithDefaults returns a copy of c with every zero field of every check set
// to its kind's default. It never overrides a value that was set.
func (c Config) WithDefaults() Config {
	out := Config{Checks: make([]CheckConfig, len(c.Checks))}
	for i, ch := range c.Checks {
		out.Checks[i] = ch.WithDefaults()
	}
	return out
}

// WithDefaults returns a copy of c with zero fields set to the kind's
// defaults. Sections are copied, never shared with c.
func (c CheckConfig) WithDefaults() CheckConfig {
	d, ok := defaults[c.Kind]
	if !ok {
		return c // Validate reports the unknown kind
	}
	if c.Interval == 0 {
		c.Interval = d.interval
	}
	if c.Timeout == 0 {
		c.Timeout = d.timeout
	}
	if c.Rise == 0 {
		c.Rise = d.rise
	}
	if c.Fall == 0 {
		c.Fall = d.fall
	}
	switch c.Kind {
	case KindHTTP, KindHTTPGenerate:
		h := HTTPConfig{}
		if c.HTTP != nil {
			h = *c.HTTP
		}
		if h.ExpectStatus == 0 {
			h.ExpectStatus = http.StatusOK
		}
		if c.Kind == KindHTTPGenerate {
			if h.Method == "" {
				h.Method = http.MethodPost
			}
			if h.Body == "" {
				h.Body = DefaultGeneratePrompt
			}
			if h.ExpectContentType == "" {
				h.ExpectContentType = "image/png"
			}
		}
		if h.Method == "" {
			h.Method = http.MethodGet
		}
		if h.Body != "" && h.ContentType == "" {
			h.ContentType = "application/json"
		}
		c.HTTP = &h
	case KindExec:
		e := ExecConfig{}
		if c.Exec != nil {
			e = *c.Exec
			e.Command = append([]string(nil), e.Command...)
			e.Env = append([]string(nil), e.Env...)
		}
		if e.OutputLimit == 0 {
			e.OutputLimit = DefaultExecOutput
		}
		c.Exec = &e
	case KindContainer:
		ct := ContainerConfig{}
		if c.Container != nil {
			ct = *c.Container
		}
		c.Container = &ct
	case KindGPU:
		g := GPUConfig{}
		if c.GPU != nil {
			g = *c.GPU
		}
		g = g.withDefaults()
		c.GPU = &g
	}
	return c
}

// nameRE is what a check name may look like: it ends up in reasons, logs
// and gossip.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks every check and returns all problems joined, each naming
// its field as "checks[i].field". Run it on the result of WithDefaults:
// zero values are errors here.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i, ch := range c.Checks {
		prefix := fmt.Sprintf("checks[%d]", i)
		if j, dup := seen[ch.Name]; dup && ch.Name != "" {
			errs = append(errs, fmt.Errorf("%s.name: %q already used by checks[%d]", prefix, ch.Name, j))
		} else {
			seen[ch.Name] = i
		}
		if err := ch.validate(prefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Validate checks one check; its errors name fields as "check.field".
func (c CheckConfig) Validate() error { return c.validate("check") }

func (c CheckConfig) validate(prefix string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{prefix, field}, args...)...))
	}
	if !nameRE.MatchString(c.Name) {
		bad("name", "%q must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}
	if _, ok := defaults[c.Kind]; !ok {
		bad("kind", "%q is not one of %v", c.Kind, Kinds)
	}
	if c.Interval < MinInterval {
		bad("interval", "%v must be >= %v", c.Interval, MinInterval)
	}
	switch {
	case c.Timeout <= 0:
		bad("timeout", "%v must be > 0", c.Timeout)
	case c.Timeout >= c.Interval:
		bad("timeout", "%v must be < interval (%v)", c.Timeout, c.Interval)
	}
	if c.Rise < 1 || c.Rise > MaxRiseFall {
		bad("rise", "%d must be between 1 and %d", c.Rise, MaxRiseFall)
	}
	if c.Fall < 1 || c.Fall > MaxRiseFall {
		bad("fall", "%d must be between 1 and %d", c.Fall, MaxRiseFall)
	}
	sections := map[string]bool{"http": c.HTTP != nil, "exec": c.Exec != nil, "container": c.Container != nil, "gpu": c.GPU != nil}
	want := map[Kind]string{KindHTTP: "http", KindHTTPGenerate: "http", KindExec: "exec", KindContainer: "container", KindGPU: "gpu"}[c.Kind]
	for _, s := range []string{"http", "exec", "container", "gpu"} {
		if sections[s] && s != want {
			bad(s, "set, but kind is %q", c.Kind)
		}
	}
	switch c.Kind {
	case KindHTTP, KindHTTPGenerate:
		if c.HTTP == nil {
			bad("http", "missing (kind %s needs http.url)", c.Kind)
		} else {
			errs = append(errs, c.HTTP.validate(prefix+".http")...)
		}
	case KindExec:
		if c.Exec == nil {
			bad("exec", "missing (kind exec needs exec.command)")
		} else {
			errs = append(errs, c.Exec.validate(prefix+".exec")...)
		}
	case KindGPU:
		if c.GPU != nil {
			errs = append(errs, c.GPU.validate(prefix+".gpu")...)
		}
	}
	return errors.Join(errs...)
}

// tokenRE matches an HTTP method token (RFC 9110 section 5.6.2, restricted
// to upper-case letters as every method in use is).
var tokenRE = regexp.MustCompile(`^[A-Z]{1,16}$`)

func (h *HTTPConfig) validate(prefix string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{prefix, field}, args...)...))
	}
	u, err := url.Parse(h.URL)
	switch {
	case h.URL == "":
		bad("url", "must be set")
	case err != nil:
		bad("url", "%q does not parse: %v", h.URL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		bad("url", "%q must use http or https", h.URL)
	case u.Host == "":
		bad("url", "%q has no host", h.URL)
	}
	if !tokenRE.MatchString(h.Method) {
		bad("method", "%q is not an HTTP method", h.Method)
	}
	if h.ExpectStatus < 100 || h.ExpectStatus > 599 {
		bad("expect_status", "%d must be between 100 and 599", h.ExpectStatus)
	}
	if h.ContentType != "" {
		if _, _, err := mime.ParseMediaType(h.ContentType); err != nil {
			bad("content_type", "%q: %v", h.ContentType, err)
		}
	}
	if h.ExpectContentType != "" {
		if _, _, err := mime.ParseMediaType(h.ExpectContentType); err != nil {
			bad("expect_content_type", "%q: %v", h.ExpectContentType, err)
		}
	}
	return errs
}

func (e *ExecConfig) validate(prefix string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{prefix, field}, args...)...))
	}
	if len(e.Command) == 0 || e.Command[0] == "" {
		bad("command", "must name a program")
	}
	for i, kv := range e.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			bad(fmt.Sprintf("env[%d]", i), "%q must be KEY=value", kv)
		}
	}
	if e.OutputLimit < 1 || e.OutputLimit > MaxOutput {
		bad("output_limit", "%d must be between 1 and %d", e.OutputLimit, MaxOutput)
	}
	return errs
}

func (g *GPUConfig) validate(prefix string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{prefix, field}, args...)...))
	}
	if g.ExpectedDevices < 0 || g.ExpectedDevices > 64 {
		bad("expected_devices", "%d must be between 0 and 64", g.ExpectedDevices)
	}
	if g.MaxTemperatureC > 150 {
		bad("max_temperature_c", "%d must be at most 150", g.MaxTemperatureC)
	}
	return errs
}
