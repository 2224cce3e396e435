package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxOutput is how much of an exec hook's output is kept for the log.
const maxOutput = 2048

// waitDelay bounds how long Wait waits, once the command has exited or
// been killed, for a process it left behind that still holds its output.
const waitDelay = 2 * time.Second

// execPath is the PATH an exec hook runs with: the agent's own
// environment is not passed on (it is root's, and may hold anything).
const execPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// runExec runs one attempt of an exec hook.
func runExec(ctx context.Context, r Runner, x Exec, e Event, attempt int) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	env := append([]string{execPath, "NEWBIEHA_ATTEMPT=" + strconv.Itoa(attempt)}, e.Env()...)
	out, err := r.Run(ctx, x.Command, env, body)
	if err != nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			return fmt.Errorf("%s: %w (output: %q)", x.Command[0], err, s)
		}
		return fmt.Errorf("%s: %w", x.Command[0], err)
	}
	return nil
}

// ExecRunner is the real Runner: the command runs in a process group of
// its own, as the agent's user, with only the given environment; when ctx
// ends the whole group is killed (SIGKILL), so a script's children die
// with it.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, argv, env []string, stdin []byte) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(stdin)
	out := &tailBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The negative pid names the process group (Setpgid made the
		// child its leader, so its pgid is its pid).
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill process group %d: %w", cmd.Process.Pid, err)
		}
		return nil
	}
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// It exited 0 and left a process holding its output: done.
		err = nil
	}
	if err != nil && ctx.Err() != nil && cmd.Process != nil {
		err = fmt.Errorf("killed (process group %d): %w", cmd.Process.Pid, ctx.Err())
	}
	return out.Bytes(), err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

// Bytes returns what is kept.
func (t *tailBuffer) Bytes() []byte { return t.buf }
