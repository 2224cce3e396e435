package main

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// init tells the operator its result on stdout and nothing else: Raft's
// start-up lines (a one-node cluster electing itself warns "heartbeat
// timeout reached") are below the floor operator commands log at. The
// CLI runs as a real process (TestMain), so whatever any library writes
// to the process's stderr is seen.
func TestInit_PrintsNoLibraryLogLines(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := freeTestPorts(t)
	cmd := exec.Command(exe, "init", "--name", "node1", "--advertise", "127.0.0.1", "--data-dir", dir,
		"--api-port", strconv.Itoa(p.API), "--raft-port", strconv.Itoa(p.Raft), "--gossip-port", strconv.Itoa(p.Gossip))
	cmd.Env = append(os.Environ(), "NEWBIEHA_TEST_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("init: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "node1") {
		t.Fatalf("init printed %q; want its result naming node1", out.String())
	}
	if errOut.Len() != 0 {
		t.Fatalf("init wrote to stderr; an operator command prints only what the operator needs:\n%s", errOut.String())
	}
}
