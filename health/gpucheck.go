package health

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/newbieha/newbieha/health/gpu"
)

// GPUProbe is what the gpu check needs from a GPU telemetry source.
// *gpu.Reader implements it with NVML; tests and drills can use a fake.
type GPUProbe interface {
	// Devices returns the telemetry of every device. An error means no
	// telemetry at all (NVML missing or failing, GPU support not built in).
	Devices(ctx context.Context) ([]gpu.Device, error)
	// XidEvents returns the Xid events received after since. A non-nil
	// error says why events are not (fully) watched; gpu.ErrXidUnsupported
	// when the devices cannot report them.
	XidEvents(since time.Time) ([]gpu.XidEvent, error)
}

var _ GPUProbe = (*gpu.Reader)(nil)

// gpuProber implements the gpu kind: one telemetry read, thresholds applied
// by EvaluateGPU. It keeps the last read for Report.
type gpuProber struct {
	cfg   GPUConfig
	probe GPUProbe
	now   func() time.Time

	mu      sync.Mutex
	last    []gpu.Device
	lastErr string
}

func (p *gpuProber) Probe(ctx context.Context) Sample {
	devs, err := p.probe.Devices(ctx)
	p.mu.Lock()
	if err != nil {
		p.last, p.lastErr = nil, err.Error()
	} else {
		p.last, p.lastErr = devs, ""
	}
	p.mu.Unlock()
	if err != nil {
		return Sample{Output: err.Error()}
	}
	now := p.now()
	var xids []gpu.XidEvent
	var notes []string
	if p.cfg.XidWindow > 0 {
		var xerr error
		xids, xerr = p.probe.XidEvents(now.Add(-p.cfg.XidWindow))
		switch {
		case errors.Is(xerr, gpu.ErrXidUnsupported):
			notes = append(notes, "Xid events not supported")
		case xerr != nil:
			notes = append(notes, "Xid watch: "+xerr.Error())
		}
	}
	if problems := EvaluateGPU(p.cfg, devs, xids, now); len(problems) > 0 {
		return Sample{Output: strings.Join(problems, "; ")}
	}
	return Sample{OK: true, Output: strings.Join(append([]string{SummarizeGPU(devs)}, notes...), "; ")}
}

// telemetry returns a copy of the last read and its error text.
func (p *gpuProber) telemetry() ([]gpu.Device, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.last), p.lastErr
}
