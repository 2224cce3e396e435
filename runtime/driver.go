package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable is wrapped by every error that comes from the container
// runtime being unreachable (Docker daemon down, socket missing, daemon not
// answering in time). Such errors read "runtime unavailable: ..." and are
// worth retrying; compare with errors.Is.
var ErrUnavailable = errors.New("runtime unavailable")

// ErrImageNotFound is wrapped when the spec's image is not present and the
// pull policy forbids pulling it (or the pull failed).
var ErrImageNotFound = errors.New("image not found")

// ErrNameConflict is wrapped when the spec's container name is taken by a
// container newbieha does not own (no labels, or another node's or
// cluster's). Such a container is never touched.
var ErrNameConflict = errors.New("container name taken by a container newbieha does not manage")

// Want is the state Ensure makes the service match.
type Want string

// The wanted states.
const (
	// Running: the container exists, matches the spec, and runs.
	Running Want = "running"
	// Stopped: no container of ours runs (a matching one is kept, stopped,
	// so its logs stay readable).
	Stopped Want = "stopped"
)

// Validate checks that w is Running or Stopped.
func (w Want) Validate() error {
	switch w {
	case Running, Stopped:
		return nil
	default:
		return fmt.Errorf("want: %q is not running or stopped", string(w))
	}
}

// Status values of State.Status besides Docker's own (created, running,
// paused, restarting, removing, exited, dead).
const (
	// StatusAbsent: no container of ours exists.
	StatusAbsent = "absent"
	// StatusExternal: the service is managed by something else (driver none).
	StatusExternal = "managed externally"
	// StatusUnavailable: the runtime could not be reached; State.Error
	// says why. Set by the Reconciler, not by drivers.
	StatusUnavailable = "runtime unavailable"
)

// State is what a driver observed of the service container.
type State struct {
	// Exists is true when a container of ours exists.
	Exists bool `json:"exists"`
	// Running is true when it runs (Docker's State.Running; true while paused or restarting too).
	Running bool `json:"running"`
	// Status is Docker's status word, StatusAbsent or StatusExternal.
	Status string `json:"status"`
	// ExitCode is the exit code of the last run.
	ExitCode int `json:"exit_code"`
	// RestartCount is how often Docker restarted it under its restart policy.
	RestartCount int `json:"restart_count"`
	// Health is Docker's HEALTHCHECK status ("starting", "healthy",
	// "unhealthy") of a running container; "" when the image has no
	// HEALTHCHECK or the container does not run.
	Health string `json:"health,omitempty"`
	// ContainerID is Docker's container ID.
	ContainerID string `json:"container_id,omitempty"`
	// Name is the container name.
	Name string `json:"name,omitempty"`
	// Image is the image reference the container was created from.
	Image string `json:"image,omitempty"`
	// SpecHash is the spec hash label of the container.
	SpecHash string `json:"spec_hash,omitempty"`
	// StartedAt is when it last started; zero if never.
	StartedAt time.Time `json:"started_at,omitzero"`
	// FinishedAt is when it last stopped; zero if never.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// OOMKilled is true when the kernel killed it for memory.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// Error is Docker's last start error for the container, if any.
	Error string `json:"error,omitempty"`
	// External is true when the service is managed by something else.
	External bool `json:"external,omitempty"`
}

// Driver runs the service container on this host. Drivers are safe for
// concurrent use. A Driver is bound to one node of one cluster: it only ever
// touches containers carrying that cluster's and node's labels.
type Driver interface {
	// Ensure makes the service match spec and want and returns what it then
	// observes. Errors name what failed; a runtime that cannot be reached
	// gives an error wrapping ErrUnavailable.
	Ensure(ctx context.Context, spec Spec, want Want) (State, error)
	// Inspect reports the service container without changing anything.
	Inspect(ctx context.Context) (State, error)
	// Remove stops and removes every container of ours.
	Remove(ctx context.Context) error
	// Close releases the driver's resources.
	Close() error
}

// NoneDriver is the driver for a service run by something else (systemd, an
// existing compose stack): newbieha only checks the service over HTTP and
// moves the VIP. Ensure changes nothing.
type NoneDriver struct{}

var _ Driver = NoneDriver{}

// externalState is what NoneDriver reports.
func externalState() State {
	return State{Status: StatusExternal, External: true}
}

// Ensure validates the arguments and reports that the service is managed
// externally.
func (NoneDriver) Ensure(_ context.Context, _ Spec, want Want) (State, error) {
	if err := want.Validate(); err != nil {
		return State{}, err
	}
	return externalState(), nil
}

// Inspect reports that the service is managed externally.
func (NoneDriver) Inspect(context.Context) (State, error) { return externalState(), nil }

// Remove does nothing.
func (NoneDriver) Remove(context.Context) error { return nil }

// Close does nothing.
func (NoneDriver) Close() error { return nil }
