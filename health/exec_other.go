//go:build !unix

package health

import "os/exec"

// killGroupOnCancel leaves os/exec's default: cancellation kills the
// process itself (no process groups on this OS).
func killGroupOnCancel(*exec.Cmd) {}
