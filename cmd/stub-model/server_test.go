package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.Node == "" {
		opts.Node = "node-test"
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return s, ts
}

func do(t *testing.T, ts *httptest.Server, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func setFault(t *testing.T, ts *httptest.Server, body string) {
	t.Helper()
	resp, b := do(t, ts, http.MethodPost, "/fault", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /fault %s: status %d: %s", body, resp.StatusCode, b)
	}
}

func TestHealthAndHeader(t *testing.T) {
	_, ts := newTestServer(t, Options{Node: "node7"})
	resp, b := do(t, ts, http.MethodGet, "/health", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Served-By"); got != "node7" {
		t.Fatalf("X-Served-By = %q, want node7", got)
	}
	var body map[string]string
	if err := json.Unmarshal(b, &body); err != nil || body["status"] != "ok" {
		t.Fatalf("body %s (%v), want status ok", b, err)
	}
	// Every response carries the header, also errors and unknown paths.
	for _, c := range []struct{ method, path string }{{"GET", "/nope"}, {"GET", "/generate"}, {"GET", "/fault"}} {
		resp, _ := do(t, ts, c.method, c.path, "")
		if got := resp.Header.Get("X-Served-By"); got != "node7" {
			t.Errorf("%s %s: X-Served-By = %q", c.method, c.path, got)
		}
	}
}

func TestGenerate(t *testing.T) {
	_, ts := newTestServer(t, Options{Node: "node1"})
	gen := func(prompt string) []byte {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"prompt": prompt})
		resp, b := do(t, ts, http.MethodPost, "/generate", string(body))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("generate %q: status %d: %s", prompt, resp.StatusCode, b)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
			t.Fatalf("Content-Type = %q", ct)
		}
		if got := resp.Header.Get("X-Served-By"); got != "node1" {
			t.Fatalf("X-Served-By = %q", got)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("decode png: %v", err)
		}
		if r := img.Bounds(); r.Dx() != ImageSize || r.Dy() != ImageSize {
			t.Fatalf("bounds %v", r)
		}
		return b
	}
	p := "<character_1><n>miku</n></character_1>"
	a1, a2 := gen(p), gen(p)
	if !bytes.Equal(a1, a2) {
		t.Fatal("same prompt gave different bytes")
	}
	seen := map[string]string{string(a1): p}
	for _, q := range []string{"<character_1><n>rin</n></character_1>", "a", "b", p + " "} {
		b := gen(q)
		if prev, dup := seen[string(b)]; dup {
			t.Fatalf("prompts %q and %q gave the same image", prev, q)
		}
		seen[string(b)] = q
	}
}

func TestGenerateBadRequest(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	cases := []struct{ name, body, want string }{
		{"bad json", `{"prompt":`, "invalid JSON"},
		{"missing prompt", `{}`, `"prompt"`},
		{"empty prompt", `{"prompt":"  "}`, `"prompt"`},
		{"wrong type", `{"prompt":3}`, "prompt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, b := do(t, ts, http.MethodPost, "/generate", c.body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			var e map[string]string
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("error body not JSON: %s", b)
			}
			if !strings.Contains(e["error"], c.want) {
				t.Fatalf("error %q does not mention %q", e["error"], c.want)
			}
		})
	}
}

func TestFaultError(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	setFault(t, ts, `{"mode":"error","status":503}`)
	for _, c := range []struct{ method, path, body string }{{"GET", "/health", ""}, {"POST", "/generate", `{"prompt":"x"}`}} {
		resp, _ := do(t, ts, c.method, c.path, c.body)
		if resp.StatusCode != 503 {
			t.Fatalf("%s: status %d, want 503", c.path, resp.StatusCode)
		}
		if resp.Header.Get("X-Served-By") == "" {
			t.Fatalf("%s: no X-Served-By", c.path)
		}
	}
	// Default status is 500; /fault keeps working; none restores.
	setFault(t, ts, `{"mode":"error"}`)
	if resp, _ := do(t, ts, "GET", "/health", ""); resp.StatusCode != 500 {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	resp, b := do(t, ts, "GET", "/fault", "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"mode":"error"`) || !strings.Contains(string(b), `"status":500`) {
		t.Fatalf("GET /fault: %d %s", resp.StatusCode, b)
	}
	setFault(t, ts, `{"mode":"none"}`)
	if resp, _ := do(t, ts, "GET", "/health", ""); resp.StatusCode != 200 {
		t.Fatalf("status %d after none, want 200", resp.StatusCode)
	}
}

// A fault set with "for" ends by itself; the timer of an older bounded
// fault does not end a newer one.
func TestFaultForEndsByItself(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	setFault(t, ts, `{"mode":"error","status":503,"for":"200ms"}`)
	if resp, _ := do(t, ts, "GET", "/health", ""); resp.StatusCode != 503 {
		t.Fatalf("status %d during the fault, want 503", resp.StatusCode)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, _ := do(t, ts, "GET", "/health", "")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bounded fault did not end by itself")
		}
		time.Sleep(10 * time.Millisecond)
	}

	setFault(t, ts, `{"mode":"error","for":"150ms"}`)
	setFault(t, ts, `{"mode":"error","status":502}`)
	time.Sleep(400 * time.Millisecond)
	if resp, _ := do(t, ts, "GET", "/health", ""); resp.StatusCode != 502 {
		t.Fatalf("status %d: an older fault's bound ended a newer, unbounded one", resp.StatusCode)
	}
}

func TestFaultSlow(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	setFault(t, ts, `{"mode":"slow","delay":"300ms"}`)
	start := time.Now()
	resp, _ := do(t, ts, "GET", "/health", "")
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("answered after %v, want >= 300ms", el)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestFaultHang(t *testing.T) {
	s, ts := newTestServer(t, Options{Fault: Fault{Mode: FaultHang}})
	// A client with a deadline gives up; the server does not answer.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/health", nil)
	if resp, err := ts.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("hang fault answered with %d", resp.StatusCode)
	}
	// /fault still answers while in hang.
	resp, b := do(t, ts, "GET", "/fault", "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), "hang") {
		t.Fatalf("GET /fault: %d %s", resp.StatusCode, b)
	}
	// Close releases hung requests.
	errc := make(chan error, 1)
	go func() {
		resp, err := ts.Client().Get(ts.URL + "/health")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	s.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("released request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release a hung request")
	}
}

func TestFaultExit(t *testing.T) {
	exited := make(chan struct{}, 1)
	_, ts := newTestServer(t, Options{Exit: func() { exited <- struct{}{} }})
	setFault(t, ts, `{"mode":"exit"}`)
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		t.Fatal("exit not called after the exit fault was answered")
	}
}

func TestFaultBadRequest(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	cases := []struct{ body, want string }{
		{`{"mode":"explode"}`, `"mode"`},
		{`{"mode":"slow","delay":"soon"}`, `"delay"`},
		{`{"mode":"slow","delay":"-1s"}`, `"delay"`},
		{`{"mode":"error","status":999}`, `"status"`},
		{`{"mode":"error","for":"soon"}`, `"for"`},
		{`{"mode":"error","for":"0s"}`, `"for"`},
		{`{"mode":"error","for":"48h"}`, `"for"`},
		{`not json`, "invalid JSON"},
	}
	for _, c := range cases {
		resp, b := do(t, ts, "POST", "/fault", c.body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), strings.ReplaceAll(c.want, `"`, `\"`)) && !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s, want 400 naming %s", c.body, resp.StatusCode, b, c.want)
		}
	}
}

func TestProbe(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	ctx := context.Background()
	if err := Probe(ctx, ts.Client(), ts.URL+"/health"); err != nil {
		t.Fatalf("probe healthy: %v", err)
	}
	setFault(t, ts, `{"mode":"error"}`)
	if err := Probe(ctx, ts.Client(), ts.URL+"/health"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("probe on error fault: %v, want status 500", err)
	}
	if err := Probe(ctx, ts.Client(), "http://127.0.0.1:1/health"); err == nil {
		t.Fatal("probe of a closed port succeeded")
	}
}

func TestParseFlagsEnv(t *testing.T) {
	t.Setenv("STUB_FAULT", "slow")
	t.Setenv("STUB_FAULT_DELAY", "1500ms")
	t.Setenv("NODE_NAME", "envnode")
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.fault.Mode != FaultSlow || c.fault.Delay != 1500*time.Millisecond || c.node != "envnode" {
		t.Fatalf("config %+v", c)
	}
	c, err = parseFlags([]string{"--fault", "error", "--node", "n2"}, io.Discard)
	if err != nil || c.fault.Mode != FaultError || c.node != "n2" {
		t.Fatalf("flags override env: %+v %v", c, err)
	}
	if _, err := parseFlags([]string{"--fault", "boom"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--fault") {
		t.Fatalf("bad fault: %v", err)
	}
}
