package runtime

// Helpers for the tests against the real Docker Engine.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// labelTest marks every container a test creates, ours or "foreign", so
// that cleanup finds them all.
const labelTest = "nbha-test"

// dockerCLI returns a raw client for the tests' own checks, or skips the
// test when no Docker daemon answers.
func dockerCLI(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		t.Skipf("no Docker daemon at %s (%v): skipping the Docker Engine tests", cli.DaemonHost(), err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// daemonSocket is the unix socket path of the local daemon.
func daemonSocket(t *testing.T, cli *client.Client) string {
	t.Helper()
	host := cli.DaemonHost()
	p, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		t.Skipf("daemon at %s is not on a unix socket", host)
	}
	return p
}

var (
	stubOnce  sync.Once
	stubImage string
	stubErr   error
)

// ensureStubImage returns the stub model image (NEWBIEHA_STUB_IMAGE or
// newbieha/stub-model:dev), building it from ../cmd/stub-model if missing,
// so that `go test` works alone.
func ensureStubImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	stubOnce.Do(func() {
		stubImage = os.Getenv("NEWBIEHA_STUB_IMAGE")
		if stubImage == "" {
			stubImage = "newbieha/stub-model:dev"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := cli.ImageInspect(ctx, stubImage); err == nil {
			return
		} else if !errdefs.IsNotFound(err) {
			stubErr = err
			return
		}
		stubErr = buildStubImage(ctx, cli, stubImage)
	})
	if stubErr != nil {
		t.Fatalf("stub image %s: %v", stubImage, stubErr)
	}
	return stubImage
}

func buildStubImage(ctx context.Context, cli *client.Client, tag string) error {
	dir, err := os.MkdirTemp("", "nbha-stub-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "stub-model")
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "../cmd/stub-model")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return errors.Join(err, errors.New(string(out)))
	}
	dockerfile, err := os.ReadFile("../cmd/stub-model/Dockerfile")
	if err != nil {
		return err
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"stub-model", 0o755, binData}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readPullStream(resp.Body) // same progress format as a pull
}

var nameSanitizer = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// uniqueName returns nbha-test-<test>-<random>, valid as a container,
// volume or cluster name.
func uniqueName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	n := strings.ToLower(nameSanitizer.ReplaceAllString(t.Name(), "-"))
	if len(n) > 40 {
		n = n[:40]
	}
	return "nbha-test-" + strings.Trim(n, "-.") + "-" + hex.EncodeToString(b)
}

// testEnv is one test's Docker fixture: a unique cluster name whose
// containers, and every container labelled for the test, are removed when
// the test ends, also on failure.
type testEnv struct {
	t       *testing.T
	cli     *client.Client
	image   string
	cluster string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	cli := dockerCLI(t)
	e := &testEnv{t: t, cli: cli, image: ensureStubImage(t, cli), cluster: uniqueName(t)}
	t.Cleanup(e.cleanup)
	return e
}

func (e *testEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, f := range []filters.Args{
		filters.NewArgs(filters.Arg("label", LabelCluster+"="+e.cluster)),
		filters.NewArgs(filters.Arg("label", labelTest+"="+e.cluster)),
	} {
		list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if err != nil {
			e.t.Errorf("cleanup: list containers: %v", err)
			continue
		}
		for _, c := range list {
			if err := e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
				e.t.Errorf("cleanup: remove container %s: %v", c.ID, err)
			}
		}
	}
}

// driver returns a Docker driver of the test's cluster for node, closed
// when the test ends.
func (e *testEnv) driver(node string, mod ...func(*DockerConfig)) *Docker {
	e.t.Helper()
	cfg := DockerConfig{Cluster: e.cluster, Node: node}
	for _, m := range mod {
		m(&cfg)
	}
	d, err := NewDocker(cfg)
	if err != nil {
		e.t.Fatalf("NewDocker: %v", err)
	}
	e.t.Cleanup(func() { d.Close() })
	return d
}

// spec returns a stub model spec named uniquely, publishing a free
// loopback port.
func (e *testEnv) spec(node string) (Spec, int) {
	e.t.Helper()
	port := freePort(e.t)
	return Spec{
		Name:          uniqueName(e.t) + "-" + node,
		Image:         e.image,
		Env:           map[string]string{"NODE_NAME": node},
		Ports:         []PortBinding{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 8080}},
		PullPolicy:    PullNever,
		StopTimeout:   5 * time.Second,
		RestartPolicy: RestartPolicy{Name: "unless-stopped"},
	}, port
}

// inspectRaw inspects a container with the raw client.
func (e *testEnv) inspectRaw(id string) container.InspectResponse {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := e.cli.ContainerInspect(ctx, id)
	if err != nil {
		e.t.Fatalf("inspect %s: %v", id, err)
	}
	return info
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// getServedBy GETs /health on the loopback port and returns X-Served-By.
func getServedBy(port int) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/health")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	return resp.Header.Get("X-Served-By"), nil
}

// unixProxy forwards connections on a unix socket at path to target: the
// "daemon socket comes back" of the unavailability test.
type unixProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startUnixProxy(t *testing.T, path, target string) *unixProxy {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	p := &unixProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// track registers c; false when the proxy is closing.
func (p *unixProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *unixProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *unixProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			up, err := net.Dial("unix", p.target)
			if err != nil {
				c.Close()
				return
			}
			if !p.track(c) {
				c.Close()
				up.Close()
				return
			}
			if !p.track(up) {
				p.untrack(c)
				up.Close()
				return
			}
			var copies sync.WaitGroup
			copies.Add(2)
			go func() { defer copies.Done(); _, _ = io.Copy(up, c); p.untrack(up); p.untrack(c) }()
			go func() { defer copies.Done(); _, _ = io.Copy(c, up); p.untrack(c); p.untrack(up) }()
			copies.Wait()
		}()
	}
}

// close stops accepting, cuts every open connection and waits for the
// goroutines.
func (p *unixProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
