//go:build !(cgo && linux)

package health

import (
	"context"
	"testing"
	"time"

	"github.com/newbieha/newbieha/health/gpu"
)

// TestGPUCheck_NotBuiltIn runs a gpu check on the stub reader of a build
// without cgo: the check fails with the reason, nothing crashes.
func TestGPUCheck_NotBuiltIn(t *testing.T) {
	reader := gpu.New(gpu.Options{})
	t.Cleanup(func() { reader.Close() })
	cc := CheckConfig{Name: "gpu", Kind: KindGPU, Required: true, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 1}
	r, err := New(Config{Checks: []CheckConfig{cc}}, Deps{GPU: reader})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	waitFor(t, "the first sample", 5*time.Second, func() bool { return !r.Report().Checks[0].LastRun.IsZero() })
	rep := r.Report()
	if rep.Healthy || rep.Reason != "gpu:gpu" || rep.Checks[0].Output != "GPU support not built in" || rep.GPUError != "GPU support not built in" {
		t.Fatalf("report: %+v", rep)
	}
}
