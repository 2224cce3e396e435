package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// A stopped member is named as not answering, with every answering
// member's own Raft figures beside it, and the status is degraded.
func TestStatus_NamesAMemberThatDidNotAnswerAndCarriesRaftFigures(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	waitFor(t, 20*time.Second, "three voters", func() error { return healthyStatus(n1.agent.Status(t.Context()), "node1", "node2", "witness") })
	var st Status
	noProblems := func() error {
		st = n1.agent.Status(t.Context())
		if len(st.Unanswered) != 0 || len(st.Problems()) != 0 {
			return fmt.Errorf("unanswered %v, problems %v", st.Unanswered, st.Problems())
		}
		return nil
	}
	waitFor(t, 20*time.Second, "no problems once the start-up quarantines are over", noProblems)
	// A voter just started grants nothing for 3.3 s: named until it ends
	// (a rolling restart waits for that before the next member).
	c.stop("witness")
	c.start("witness")
	waitFor(t, 3*time.Second, "the witness's quarantine named while it lasts", func() error {
		if p := strings.Join(n1.agent.Status(t.Context()).Problems(), "; "); !strings.Contains(p, "member witness grants no lease for") || !strings.Contains(p, "start-up quarantine") {
			return fmt.Errorf("problems %q", p)
		}
		return nil
	})
	waitFor(t, 20*time.Second, "the witness's quarantine to end", noProblems)
	for _, m := range st.Members {
		if !m.Answered || m.Term == 0 || m.AppliedIndex == 0 || m.CommitIndex == 0 {
			t.Fatalf("%s: %+v, want its own term and indexes", m.Name, m)
		}
		if m.Name != st.Leader && m.LastContact <= 0 {
			t.Fatalf("follower %s: last contact %v", m.Name, m.LastContact)
		}
	}
	c.stop("node2")
	st = n1.agent.Status(t.Context())
	if len(st.Unanswered) != 1 || st.Unanswered[0] != "node2" {
		t.Fatalf("unanswered %v, want [node2]", st.Unanswered)
	}
	if p := strings.Join(st.Problems(), "; "); !strings.Contains(p, "member node2 did not answer") {
		t.Fatalf("problems %q", p)
	}
}

func TestFollowsLeader(t *testing.T) {
	for _, tt := range []struct {
		s    SelfReport
		want string
	}{
		{SelfReport{Name: "node2", Raft: RaftFollower, Leader: "node1"}, ""},
		{SelfReport{Name: "node2", Raft: "candidate"}, "node2 does not follow the leader node1 yet (raft candidate, sees leader none)"},
		{SelfReport{Name: "node2", Raft: RaftFollower, Leader: "witness"}, "sees leader witness"},
		{SelfReport{Name: "node2", Raft: RaftLeader, Leader: "node2"}, "raft leader"},
		{SelfReport{Name: "node1", Raft: RaftLeader, Leader: "node1"}, ""},
	} {
		err := followsLeader(tt.s, "node1")
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want %q", tt.s, err, tt.want)
		}
	}
}
