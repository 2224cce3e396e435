package health

import (
	"context"
	"fmt"
)

// ContainerState is the workload container's state as the runtime sees it.
// It is health's own plain type: the agent adapts its runtime's inspect
// result to it.
type ContainerState struct {
	// Exists is false when there is no such container.
	Exists bool
	// Running is Docker's State.Running (true for a paused container too).
	Running bool
	// Status is Docker's State.Status: created, running, paused,
	// restarting, removing, exited or dead.
	Status string
	// Health is the image HEALTHCHECK's status: "", "starting", "healthy"
	// or "unhealthy" ("" when the image has no health check).
	Health string
	// RestartCount is Docker's count of restarts by the restart policy.
	RestartCount int
	// ExitCode is the last exit code, meaningful when not running.
	ExitCode int
}

// ContainerInspector reads the workload container's state. Implementations
// must honour ctx.
type ContainerInspector interface {
	InspectContainer(ctx context.Context) (ContainerState, error)
}

// ContainerInspectorFunc adapts a function to ContainerInspector.
type ContainerInspectorFunc func(ctx context.Context) (ContainerState, error)

// InspectContainer calls f(ctx).
func (f ContainerInspectorFunc) InspectContainer(ctx context.Context) (ContainerState, error) {
	return f(ctx)
}

// containerProber implements the container kind. A sample fails when the
// container cannot be inspected (the runtime cannot vouch for it), does not
// exist, is not running (or is paused or restarting), its image health check
// says starting or unhealthy, or its restart count rose since the previous
// sample (a crash loop fails sample after sample; one restart fails one).
type containerProber struct {
	cfg       ContainerConfig
	inspector ContainerInspector

	// Only the check's goroutine touches these.
	seen         bool
	lastRestarts int
}

func (p *containerProber) Probe(ctx context.Context) Sample {
	st, err := p.inspector.InspectContainer(ctx)
	if err != nil {
		return Sample{Output: fmt.Sprintf("inspect container: %v", err)}
	}
	if !st.Exists {
		p.seen = false
		return Sample{Output: "container not found"}
	}
	restarted := 0
	if p.seen && st.RestartCount > p.lastRestarts {
		restarted = st.RestartCount - p.lastRestarts
	}
	// A lower count means a new container: it becomes the new baseline.
	p.seen, p.lastRestarts = true, st.RestartCount

	status := st.Status
	if status == "" {
		status = map[bool]string{true: "running", false: "not running"}[st.Running]
	}
	desc := fmt.Sprintf("container %s", status)
	if st.Health != "" {
		desc += ", health " + st.Health
	}
	desc += fmt.Sprintf(", %d restarts", st.RestartCount)

	switch {
	case !st.Running || status != "running":
		if !st.Running {
			desc += fmt.Sprintf(", exit code %d", st.ExitCode)
		}
		return Sample{Output: desc}
	case !p.cfg.IgnoreDockerHealth && (st.Health == "starting" || st.Health == "unhealthy"):
		return Sample{Output: desc}
	case !p.cfg.IgnoreRestarts && restarted > 0:
		return Sample{Output: fmt.Sprintf("%s: restarted %d times since the last sample", desc, restarted)}
	}
	return Sample{OK: true, Output: desc}
}
