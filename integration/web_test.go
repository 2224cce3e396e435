//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/newbieha/newbieha/cluster"
)

// The status page in a real browser: headless Chromium (Debian's
// chromium-headless-shell) in the client's namespace loads the page from
// the witness's agent; what it shows (members, Raft states, the holder,
// the history) is checked against `status -o json` and `history -o json`;
// then a planned failover shows on the page without a reload. Screenshots
// before and after are kept in bin/test-artifacts/.

// pageView is what the browser helper reads off the page.
type pageView struct {
	Members map[string]string `json:"members"` // name -> raft state shown
	Holder  string            `json:"holder"`
	Active  string            `json:"active"`
	Epochs  []int             `json:"epochs"` // history rows, newest first
	Marker  string            `json:"marker"` // set once at load: the same page, not reloaded
}

const readPageJS = `(() => {
  const members = {};
  for (const tr of document.querySelectorAll("#members tbody tr")) {
    members[tr.dataset.member] = tr.querySelector('[data-field="raft"]').textContent;
  }
  return {
    members,
    holder: document.getElementById("holder").textContent,
    active: document.getElementById("active").textContent,
    epochs: [...document.querySelectorAll("#history tbody tr")].map((tr) => Number(tr.dataset.epoch)),
    marker: window.__nbhaMarker || "",
  };
})()`

func chromiumPath(t testing.TB) string {
	for _, p := range []string{"chromium-headless-shell", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("needs Chromium (Debian: chromium-headless-shell), installed by .ci/run")
	return ""
}

// TestWebBrowserHelper is the browser side, run by TestWeb_PageInABrowser
// inside the client's namespace (NBHA_WEB_DIR set); it is skipped
// otherwise. It talks to the test through files in NBHA_WEB_DIR.
func TestWebBrowserHelper(t *testing.T) {
	dir, url := os.Getenv("NBHA_WEB_DIR"), os.Getenv("NBHA_WEB_URL")
	if dir == "" {
		t.Skip("run by TestWeb_PageInABrowser")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 1600))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	read := func(name string) pageView {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[pageView](readPageJS))
		if err != nil {
			t.Fatalf("read the page (%s): %v", name, err)
		}
		return v
	}
	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#members tbody tr`))); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__nbhaMarker = "loaded-once"`)); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	time.Sleep(1500 * time.Millisecond) // a full redraw after the marker
	shot("before.png")
	write("before.json", read("before"))
	// Wait for the test's failover, then for the page to show it by itself.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dir, "failover-done")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var v pageView
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if v = read("after"); v.Holder == "node2" {
			break
		}
	}
	shot("after.png")
	write("after.json", v)
}

func TestWeb_PageInABrowser(t *testing.T) {
	chromiumPath(t)
	f := newFailoverLab(t)
	// The page on the witness: web: true on its metrics address.
	addr := f.w.ip + ":7703"
	f.kill(f.w, syscall.SIGTERM)
	path := filepath.Join(f.w.dataDir, cluster.ConfigFileName)
	nc, err := cluster.LoadNodeConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	nc.MetricsAddr, nc.Web = addr, true
	if err := cluster.WriteNodeConfig(path, nc); err != nil {
		t.Fatal(err)
	}
	f.startAgent(f.w)
	waitFor(t, 30*time.Second, "three voters again", func() error {
		s, err := f.status(f.w)
		if err != nil {
			return err
		}
		return healthy(s, "node1", "node2", "witness")
	})

	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command("ip", "netns", "exec", f.client.ns, exe, "-test.run", "^TestWebBrowserHelper$", "-test.v", "-test.timeout", "4m")
	helper.Env = append(os.Environ(), "NBHA_WEB_DIR="+dir, "NBHA_WEB_URL=http://"+addr+"/")
	out, err := os.Create(filepath.Join(dir, "helper.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	helper.Stdout, helper.Stderr = out, out
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var helperErr error
	go func() { helperErr = helper.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = helper.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "helper.log"))
			t.Logf("browser helper:\n%s", tail(string(b), 40))
		}
	})
	readView := func(name string) pageView {
		t.Helper()
		var v pageView
		waitFor(t, 2*time.Minute, "the browser's "+name, func() error {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				select {
				case <-exited:
					return fmt.Errorf("the browser helper ended: %v", helperErr)
				default:
				}
				return err
			}
			return json.Unmarshal(b, &v)
		})
		return v
	}

	before := readView("before.json")
	// What the page shows is what status and history say.
	var st cluster.Status
	if err := json.Unmarshal([]byte(f.mustCLI(f.w, "status", "--data-dir", f.w.dataDir, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, m := range st.Members {
		want[m.Name] = m.Raft
	}
	if !reflect.DeepEqual(before.Members, want) || before.Holder != st.VIP.Holder || before.Active != st.Active.Node {
		t.Fatalf("the page shows %+v; status says members %v, holder %s, active %s", before, want, st.VIP.Holder, st.Active.Node)
	}
	hist := f.checkHistory(f.w)
	var epochs []int
	for _, h := range hist {
		epochs = append(epochs, int(h.Epoch))
	}
	sort.Sort(sort.Reverse(sort.IntSlice(epochs)))
	if !reflect.DeepEqual(before.Epochs, epochs) || before.Marker != "loaded-once" {
		t.Fatalf("the page's history %v (marker %q), history says %v", before.Epochs, before.Marker, epochs)
	}

	f.mustCLI(f.n1, "failover", "--to", "node2", "--data-dir", f.n1.dataDir)
	if err := os.WriteFile(filepath.Join(dir, "failover-done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	after := readView("after.json")
	if after.Holder != "node2" || after.Active != "node2" || len(after.Epochs) != len(before.Epochs)+1 || after.Epochs[0] <= before.Epochs[0] {
		t.Fatalf("after the failover the page shows %+v (before %+v)", after, before)
	}
	if after.Marker != "loaded-once" {
		t.Fatalf("the page was reloaded (marker %q): it must update by itself", after.Marker)
	}
	select {
	case <-exited:
		if helperErr != nil {
			t.Fatalf("browser helper: %v", helperErr)
		}
	case <-time.After(time.Minute):
		t.Fatal("the browser helper did not end")
	}
	// Keep the screenshots.
	keep := filepath.Join("..", "bin", "test-artifacts")
	if err := os.MkdirAll(keep, 0o755); err == nil {
		for _, n := range []string{"before.png", "after.png"} {
			if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil && len(b) > 1000 {
				_ = os.WriteFile(filepath.Join(keep, "web-"+n), b, 0o644)
			} else {
				t.Errorf("screenshot %s: %d bytes, %v", n, len(b), err)
			}
		}
		abs, _ := filepath.Abs(keep)
		t.Logf("screenshots kept in %s", abs)
	}
}
