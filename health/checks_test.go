package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/newbieha/newbieha/health/gpu"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// probe runs one sample of the check cc (defaults applied) with its timeout.
func probe(t *testing.T, cc CheckConfig, deps Deps) Sample {
	t.Helper()
	p, err := NewProber(cc, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cc.WithDefaults().Timeout)
	defer cancel()
	return p.Probe(ctx)
}

func httpCheck(url string) CheckConfig {
	return CheckConfig{Name: "health", Kind: KindHTTP, Interval: 2 * time.Second, Timeout: time.Second, HTTP: &HTTPConfig{URL: url}}
}

func TestHTTPCheck(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "model not loaded\nretry later", http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /created", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	if s := probe(t, httpCheck(ts.URL+"/health"), Deps{}); !s.OK || !strings.HasPrefix(s.Output, "HTTP 200 OK in ") {
		t.Fatalf("healthy: %+v", s)
	}
	if s := probe(t, httpCheck(ts.URL+"/broken"), Deps{}); s.OK || s.Output != "HTTP 500 Internal Server Error (want 200): model not loaded retry later" {
		t.Fatalf("500: %+v", s)
	}
	created := httpCheck(ts.URL + "/created")
	if s := probe(t, created, Deps{}); s.OK {
		t.Fatalf("201 with want 200: %+v", s)
	}
	created.HTTP.ExpectStatus = http.StatusCreated
	if s := probe(t, created, Deps{}); !s.OK {
		t.Fatalf("201 with want 201: %+v", s)
	}
	hung := httpCheck(ts.URL + "/hang")
	hung.Timeout = 100 * time.Millisecond
	start := time.Now()
	if s := probe(t, hung, Deps{}); s.OK || !strings.Contains(s.Output, "context deadline exceeded") {
		t.Fatalf("hang: %+v", s)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("hung probe took %v", d)
	}

	// Nothing listening: a closed server's address refuses connections.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	if s := probe(t, httpCheck(deadURL+"/health"), Deps{}); s.OK || !strings.Contains(s.Output, "connection refused") {
		t.Fatalf("refused: %+v", s)
	}
}

func TestHTTPGenerateCheck(t *testing.T) {
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 1000)...)
	var mode string // set before each probe; the handler runs during it
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/generate" || string(body) != `{"prompt":"health"}` ||
			r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, fmt.Sprintf("bad request %s %s %q %q", r.Method, r.URL.Path, body, r.Header.Get("Content-Type")), http.StatusBadRequest)
			return
		}
		switch mode {
		case "png":
			w.Header().Set("Content-Type", "image/png")
			w.Write(png)
		case "json":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"error":"oom"}`)
		case "notpng":
			w.Header().Set("Content-Type", "image/png")
			fmt.Fprint(w, "GIF89a")
		case "short":
			// Promise more than is sent: the client sees the body cut short.
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Content-Length", "5000")
			w.Write(png[:100])
		case "busy":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(ts.Close)
	cc := CheckConfig{Name: "generate", Kind: KindHTTPGenerate, HTTP: &HTTPConfig{URL: ts.URL + "/generate"}}

	for _, c := range []struct {
		mode string
		ok   bool
		want string
	}{
		{"png", true, "HTTP 200 OK, image/png, 1008 bytes in "},
		{"json", false, `HTTP 200 OK with content type "application/json" (want "image/png")`},
		{"notpng", false, "HTTP 200 OK, image/png body of 6 bytes is not a PNG image"},
		{"short", false, "body cut short after 100 bytes"},
		{"busy", false, "HTTP 503 Service Unavailable (want 200): busy"},
	} {
		mode = c.mode
		s := probe(t, cc, Deps{})
		if s.OK != c.ok || !strings.Contains(s.Output, c.want) {
			t.Errorf("%s: %+v, want ok=%v and %q", c.mode, s, c.ok, c.want)
		}
	}
}

func execCheck(timeout time.Duration, argv ...string) CheckConfig {
	return CheckConfig{Name: "script", Kind: KindExec, Interval: time.Minute, Timeout: timeout, Exec: &ExecConfig{Command: argv}}
}

func TestExecCheck(t *testing.T) {
	if s := probe(t, execCheck(5*time.Second, "sh", "-c", "exit 1"), Deps{}); s.OK || s.Output != "exit status 1" {
		t.Fatalf("exit 1: %+v", s)
	}
	if s := probe(t, execCheck(5*time.Second, "sh", "-c", "echo out; echo err >&2; exit 0"), Deps{}); !s.OK || s.Output != "exit status 0: out\nerr" {
		t.Fatalf("exit 0: %+v", s)
	}
	// No shell unless asked: the argument is passed as is.
	if s := probe(t, execCheck(5*time.Second, "echo", "$HOME;", "exit", "1"), Deps{}); !s.OK || s.Output != "exit status 0: $HOME; exit 1" {
		t.Fatalf("argv without shell: %+v", s)
	}
	dir := t.TempDir()
	cc := execCheck(5*time.Second, "sh", "-c", `echo "$NEWBIEHA_TEST_VAR $(pwd)"; exit 3`)
	cc.Exec.Env, cc.Exec.Dir = []string{"NEWBIEHA_TEST_VAR=hello"}, dir
	if s := probe(t, cc, Deps{}); s.OK || s.Output != "exit status 3: hello "+dir {
		t.Fatalf("env and dir: %+v", s)
	}
	// Only the last output_limit bytes are kept.
	cc = execCheck(5*time.Second, "sh", "-c", `i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; exit 2`)
	cc.Exec.OutputLimit = 64
	if s := probe(t, cc, Deps{}); s.OK || !strings.HasPrefix(s.Output, "exit status 2: …") || !strings.HasSuffix(s.Output, "line 499") || len(s.Output) > 64+len("exit status 2: …") {
		t.Fatalf("bounded output: %q", s.Output)
	}
	if s := probe(t, execCheck(5*time.Second, filepath.Join(dir, "missing")), Deps{}); s.OK || !strings.Contains(s.Output, "no such file") {
		t.Fatalf("missing program: %+v", s)
	}
	if s := probe(t, execCheck(5*time.Second, "sh", "-c", "kill -9 $$"), Deps{}); s.OK || s.Output != "signal: killed" {
		t.Fatalf("killed by a signal: %+v", s)
	}
}

// TestExecCheck_TimeoutKillsProcessGroup runs a script that starts a
// background child and then sleeps: on timeout both must die.
func TestExecCheck_TimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := fmt.Sprintf(`sleep 60 & echo $! > %s; echo started; sleep 60`, pidFile)
	start := time.Now()
	s := probe(t, execCheck(300*time.Millisecond, "sh", "-c", script), Deps{})
	elapsed := time.Since(start)
	if s.OK || s.Output != "timed out after 300ms; process group killed: started" {
		t.Fatalf("timeout: %+v", s)
	}
	if elapsed > 3*time.Second {
		t.Fatalf("probe returned after %v", elapsed)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, "the background child to die", 5*time.Second, func() bool { return !processAlive(pid) })
}

// processAlive reports whether pid exists and is not a zombie (the child's
// reaper may be slow to collect it).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestContainerCheck(t *testing.T) {
	var next ContainerState
	var nextErr error
	insp := ContainerInspectorFunc(func(ctx context.Context) (ContainerState, error) { return next, nextErr })
	p := &containerProber{cfg: ContainerConfig{}, inspector: insp}
	run := func(st ContainerState, err error) Sample {
		next, nextErr = st, err
		return p.Probe(context.Background())
	}
	running := func(restarts int, health string) ContainerState {
		return ContainerState{Exists: true, Running: true, Status: "running", Health: health, RestartCount: restarts}
	}
	steps := []struct {
		st   ContainerState
		err  error
		ok   bool
		want string
	}{
		{running(0, ""), nil, true, "container running, 0 restarts"},
		{running(0, "healthy"), nil, true, "container running, health healthy, 0 restarts"},
		{running(0, "starting"), nil, false, "health starting"},
		{running(0, "unhealthy"), nil, false, "health unhealthy"},
		{running(2, "healthy"), nil, false, "restarted 2 times since the last sample"},
		{running(2, "healthy"), nil, true, "2 restarts"},
		{ContainerState{Exists: true, Status: "exited", ExitCode: 137, RestartCount: 2}, nil, false, "container exited, 2 restarts, exit code 137"},
		{ContainerState{Exists: true, Running: true, Status: "paused", RestartCount: 2}, nil, false, "container paused"},
		{ContainerState{Exists: true, Running: true, Status: "restarting", RestartCount: 3}, nil, false, "container restarting"},
		{ContainerState{}, nil, false, "container not found"},
		// A recreated container starts a new baseline, even with restarts.
		{running(1, ""), nil, true, "1 restarts"},
		{running(0, ""), nil, true, "0 restarts"},
		{ContainerState{}, errors.New("docker: connection refused"), false, "inspect container: docker: connection refused"},
	}
	for i, s := range steps {
		got := run(s.st, s.err)
		if got.OK != s.ok || !strings.Contains(got.Output, s.want) {
			t.Fatalf("step %d: %+v, want ok=%v %q", i, got, s.ok, s.want)
		}
	}

	lax := &containerProber{cfg: ContainerConfig{IgnoreRestarts: true, IgnoreDockerHealth: true}, inspector: insp}
	for _, st := range []ContainerState{running(0, "unhealthy"), running(5, "starting")} {
		next, nextErr = st, nil
		if s := lax.Probe(context.Background()); !s.OK {
			t.Fatalf("ignoring health and restarts: %+v", s)
		}
	}
}

// fakeGPU is a GPUProbe with settable answers.
type fakeGPU struct {
	devs    []gpu.Device
	err     error
	xids    []gpu.XidEvent
	xidErr  error
	since   time.Time
	devCall int
}

func (f *fakeGPU) Devices(ctx context.Context) ([]gpu.Device, error) {
	f.devCall++
	return f.devs, f.err
}

func (f *fakeGPU) XidEvents(since time.Time) ([]gpu.XidEvent, error) {
	f.since = since
	return f.xids, f.xidErr
}

func TestGPUCheck(t *testing.T) {
	fake := &fakeGPU{devs: []gpu.Device{h200(0), h200(1)}}
	now := func() time.Time { return t0 }
	p := &gpuProber{cfg: GPUConfig{ExpectedDevices: 2}.withDefaults(), probe: fake, now: now}

	s := p.Probe(context.Background())
	if !s.OK || !strings.HasPrefix(s.Output, "2 GPUs ok (2× NVIDIA H200)") {
		t.Fatalf("healthy: %+v", s)
	}
	if !fake.since.Equal(t0.Add(-DefaultXidWindow)) {
		t.Fatalf("XidEvents asked since %v", fake.since)
	}
	if devs, errText := p.telemetry(); len(devs) != 2 || errText != "" {
		t.Fatalf("telemetry: %v %q", devs, errText)
	}

	fake.xidErr = gpu.ErrXidUnsupported
	if s := p.Probe(context.Background()); !s.OK || !strings.HasSuffix(s.Output, "; Xid events not supported") {
		t.Fatalf("Xid unsupported: %+v", s)
	}
	fake.xidErr = errors.New("wait for NVML events: ERROR_UNKNOWN")
	if s := p.Probe(context.Background()); !s.OK || !strings.HasSuffix(s.Output, "; Xid watch: wait for NVML events: ERROR_UNKNOWN") {
		t.Fatalf("Xid watch failing: %+v", s)
	}
	fake.xidErr = nil

	fake.xids = []gpu.XidEvent{{Time: t0.Add(-time.Second), Index: 1, Xid: 79}}
	if s := p.Probe(context.Background()); s.OK || !strings.Contains(s.Output, "gpu1 critical Xid 79") {
		t.Fatalf("Xid 79: %+v", s)
	}
	fake.xids = nil

	fake.devs[1].TemperatureC = 99
	if s := p.Probe(context.Background()); s.OK || !strings.Contains(s.Output, "temperature 99°C > 90°C") {
		t.Fatalf("hot: %+v", s)
	}

	fake.devs, fake.err = nil, gpu.ErrNotBuiltIn
	if s := p.Probe(context.Background()); s.OK || s.Output != "GPU support not built in" {
		t.Fatalf("not built in: %+v", s)
	}
	if devs, errText := p.telemetry(); devs != nil || errText != "GPU support not built in" {
		t.Fatalf("telemetry after failure: %v %q", devs, errText)
	}
}
