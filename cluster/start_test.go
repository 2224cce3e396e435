package cluster

import (
	"testing"
)

// A second agent on a live data dir fails on the data dir's lock before it
// runs BeforeStart, so it never removes the live agent's VIP or fence; the
// live agent's own start ran it.
func TestStart_SecondAgentOnALiveDataDirNeverCleansUp(t *testing.T) {
	c := newTestCluster(t)
	n := c.init("node1", "127.0.0.1")
	cfg, err := LoadNodeConfig(n.dataDir + "/" + ConfigFileName)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	second, err := Start(Config{DataDir: n.dataDir, Node: cfg, Logger: testLogger(t, "second"), BeforeStart: func() error { ran = true; return nil }})
	if err == nil {
		second.Close()
		t.Fatal("a second agent started on a live data dir")
	}
	if ran {
		t.Fatal("the second agent ran its clean-up (it would remove the live agent's VIP) before failing on the lock")
	}
	c.stop("node1")
	again, err := Start(Config{DataDir: n.dataDir, Node: cfg, Logger: testLogger(t, "again"), BeforeStart: func() error { ran = true; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !ran {
		t.Fatal("BeforeStart did not run on a start that holds the data dir")
	}
}
