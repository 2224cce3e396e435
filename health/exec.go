package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// execWaitDelay is how long a finished or killed command's output pipes
// stay open for children that inherited them (os/exec Cmd.WaitDelay).
const execWaitDelay = time.Second

// execProber implements the exec kind: the command's exit status decides,
// as with Keepalived's vrrp_script. No shell is involved unless the command
// names one.
type execProber struct {
	cfg     ExecConfig
	timeout time.Duration
}

func (p *execProber) Probe(ctx context.Context) Sample {
	cmd := exec.CommandContext(ctx, p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Dir = p.cfg.Dir
	out := newTailBuffer(p.cfg.OutputLimit)
	cmd.Stdout, cmd.Stderr = out, out
	// On timeout the whole process group is killed: a script's children
	// (curl, sleep) go with it.
	killGroupOnCancel(cmd)
	cmd.WaitDelay = execWaitDelay

	err := cmd.Run()
	text := strings.TrimRight(out.String(), "\n")
	join := func(head string) string {
		if text == "" {
			return head
		}
		return head + ": " + text
	}
	switch {
	case err != nil && ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Sample{Output: join(fmt.Sprintf("timed out after %v; process group killed", p.timeout))}
		}
		return Sample{Output: join("cancelled")}
	case cmd.ProcessState == nil:
		return Sample{Output: fmt.Sprintf("start %q: %v", p.cfg.Command[0], err)}
	case cmd.ProcessState.Success():
		// err may be exec.ErrWaitDelay: a child kept the output open.
		return Sample{OK: true, Output: join("exit status 0")}
	default:
		return Sample{Output: join(cmd.ProcessState.String())}
	}
}
