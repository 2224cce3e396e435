package cluster

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

func TestCluster_InitJoinStatusFailoverRejoin(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	all := []string{"node1", "node2", "witness"}

	ctx := context.Background()
	for _, name := range all {
		waitFor(t, 15*time.Second, "status from "+name, func() error {
			return healthyStatus(c.nodes[name].agent.Status(ctx), all...)
		})
	}
	st := c.nodes["node2"].agent.Status(ctx)
	for _, m := range st.Members {
		if want := c.nodes[m.Name].ip; m.Address != want {
			t.Errorf("member %s address %q, want %q", m.Name, m.Address, want)
		}
		if want := c.nodes[m.Name].role; m.Role != want {
			t.Errorf("member %s role %q, want %q", m.Name, m.Role, want)
		}
	}

	// Stop the leader: the other two elect a new one.
	old := c.leader()
	if old == nil {
		t.Fatal("no leader")
	}
	c.stop(old.name)
	var survivor string
	for _, n := range all {
		if n != old.name {
			survivor = n
		}
	}
	waitFor(t, 15*time.Second, "a new leader", func() error {
		s := c.nodes[survivor].agent.Status(ctx)
		if s.Leader == "" || s.Leader == old.name {
			return errors.New("leader is " + s.Leader)
		}
		for _, m := range s.Members {
			if m.Name == old.name && m.Raft != RaftUnreachable {
				return errors.New("stopped node shows as " + m.Raft)
			}
		}
		return nil
	})

	// Restart it from its data dir: it rejoins as a follower, no operator action.
	c.start(old.name)
	for _, name := range all {
		waitFor(t, 15*time.Second, "status after restart from "+name, func() error {
			s := c.nodes[name].agent.Status(ctx)
			if err := healthyStatus(s, all...); err != nil {
				return err
			}
			if s.Leader == old.name {
				return errors.New("restarted node leads again; want follower")
			}
			return nil
		})
	}
	if got := c.nodes[old.name].agent.RaftState(); got != RaftFollower {
		t.Errorf("restarted %s is %s, want follower", old.name, got)
	}
}

func TestJoin_BadTokensAreRefusedAndChangeNothing(t *testing.T) {
	c := newTestCluster(t)
	c.init("node1", "127.0.0.1")
	a := c.nodes["node1"].agent
	before := a.FSM().State().Members

	cases := map[string]struct {
		token string
		want  error
	}{
		"malformed": {token: "not-a-token", want: nil}, // refused locally before any call
		"wrong secret": {token: func() string {
			tok := []byte(c.token)
			// flip a secret digit: nbha1.<id>.<secret>...
			i := len("nbha1.") + 7
			if tok[i] == '0' {
				tok[i] = '1'
			} else {
				tok[i] = '0'
			}
			return string(tok)
		}(), want: ErrTokenInvalid},
		"unknown id": {token: "nbha1.zzzzzz" + c.token[len("nbha1.abcdef"):], want: ErrTokenInvalid},
		"other CA":   {token: c.token[:len(c.token)-64] + "0000000000000000000000000000000000000000000000000000000000000000", want: nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			n := &testNode{name: "intruder", role: fsm.RoleGPU, ip: "127.0.0.9", dataDir: t.TempDir(), ports: freePorts(t, "127.0.0.9")}
			err := c.tryJoin(n, "node1", tc.token)
			if err == nil {
				t.Fatal("join succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}

	// Expired: a token valid for an hour, an hour and a minute later.
	tok, _, err := a.CreateToken(context.Background(), time.Hour, fsm.RoleGPU)
	if err != nil {
		t.Fatal(err)
	}
	c.clock.Advance(61 * time.Minute)
	n := &testNode{name: "late", role: fsm.RoleGPU, ip: "127.0.0.9", dataDir: t.TempDir(), ports: freePorts(t, "127.0.0.9")}
	if err := c.tryJoin(n, "node1", tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired token: err = %v, want ErrTokenExpired", err)
	}
	if after := a.FSM().State().Members; !reflect.DeepEqual(before, after) {
		t.Fatalf("members changed by refused joins:\nbefore %+v\nafter  %+v", before, after)
	}
}
