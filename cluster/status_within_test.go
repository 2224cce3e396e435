package cluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// A member that accepts connections and never answers (a host behind a
// silent network, a paused agent) costs Status its full member timeout,
// and StatusWithin only the bound asked for; either way it is unanswered.
// The operator API takes the bound as ?member_timeout and refuses one out
// of range, naming it.
func TestStatusWithin_BoundsTheWaitForASilentMember(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.init("node1", "127.0.0.1")
	n2 := c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	waitFor(t, 10*time.Second, "node2 answering status", func() error {
		st := n1.agent.Status(context.Background())
		for _, m := range st.Members {
			if m.Name == "node2" && !m.Answered {
				return errors.New("node2 has not answered yet")
			}
		}
		return nil
	})
	c.stop("node2")
	ln, err := net.Listen("tcp", net.JoinHostPort(n2.ip, strconv.Itoa(n2.ports.API)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, conn) // accepted, never answered
		}
	}()

	ctx := context.Background()
	silent := func(st Status) bool {
		return len(st.Unanswered) == 1 && st.Unanswered[0] == "node2"
	}
	begin := time.Now()
	st := n1.agent.Status(ctx)
	full := time.Since(begin)
	begin = time.Now()
	short := n1.agent.StatusWithin(ctx, 100*time.Millisecond)
	bounded := time.Since(begin)
	if !silent(st) || !silent(short) {
		t.Fatalf("unanswered %v and %v, want node2", st.Unanswered, short.Unanswered)
	}
	if full < 700*time.Millisecond || bounded > 400*time.Millisecond || bounded < 100*time.Millisecond {
		t.Fatalf("Status took %v (want its %v), StatusWithin(100ms) %v", full, StatusTimeout, bounded)
	}

	local := NewLocalClient(n1.dataDir)
	begin = time.Now()
	st, err = local.StatusWithin(ctx, 100*time.Millisecond)
	if err != nil || !silent(st) || time.Since(begin) > 500*time.Millisecond {
		t.Fatalf("client StatusWithin: %v, %v after %v", err, st.Unanswered, time.Since(begin))
	}
	for _, bad := range []string{"1ms", "2s", "soon"} {
		resp, err := socketHTTP(n1.dataDir).Get("http://agent/v1/status?member_timeout=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("member_timeout=%s: status %d", bad, resp.StatusCode)
		}
	}
	if _, err := local.StatusWithin(ctx, time.Hour); err == nil || !strings.Contains(err.Error(), "member_timeout") {
		t.Errorf("an hour: %v, want the key named", err)
	}
}
