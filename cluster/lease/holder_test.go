package lease

import (
	"testing"
	"time"
)

func grant(voter string, req Request) Answer {
	return Answer{Voter: voter, To: req.From, Epoch: req.Epoch, Nonce: req.Nonce, Granted: true}
}

func reqTo(t *testing.T, out Output, to string) Request {
	t.Helper()
	for _, e := range out.Send {
		if e.To == to {
			return e.Req
		}
	}
	t.Fatalf("no request to %s in %+v", to, out.Send)
	return Request{}
}

func TestHolderRound(t *testing.T) {
	const ms = time.Millisecond
	p := DefaultParams()
	at1 := View{Active: "node1", Epoch: 3, ActiveIsGPU: true}
	hv := HolderView{View: at1, SelfGPU: true, Voters: testVoters, Params: p}
	ts := 10 * time.Second

	for _, tc := range []struct {
		name string
		// answers arrive at ts+at in order; want is the deadline after the
		// last (0: none set).
		answers func(r Request) []Answer
		at      time.Duration
		want    Time
	}{
		{"a majority sets t_s+L", func(r Request) []Answer {
			return []Answer{grant("node1", r), grant("witness", r)}
		}, 30 * ms, ts + p.Duration},
		{"anchored at t_s however late the majority", func(r Request) []Answer {
			return []Answer{grant("node1", r), grant("node2", r)}
		}, 400 * ms, ts + p.Duration},
		{"a majority that comes after t_s+L sets nothing", func(r Request) []Answer {
			return []Answer{grant("node1", r), grant("node2", r)}
		}, p.Duration, 0},
		{"one grant is no majority", func(r Request) []Answer {
			return []Answer{grant("node1", r)}
		}, 0, 0},
		{"the same voter twice is one grant", func(r Request) []Answer {
			return []Answer{grant("node1", r), grant("node1", r)}
		}, 0, 0},
		{"a refusal does not count", func(r Request) []Answer {
			a := grant("node2", r)
			a.Granted = false
			return []Answer{grant("node1", r), a}
		}, 0, 0},
		{"an old nonce does not count", func(r Request) []Answer {
			a := grant("node2", r)
			a.Nonce--
			return []Answer{grant("node1", r), a}
		}, 0, 0},
		{"another epoch does not count", func(r Request) []Answer {
			a := grant("node2", r)
			a.Epoch = 2
			return []Answer{grant("node1", r), a}
		}, 0, 0},
		{"an answer for another node does not count", func(r Request) []Answer {
			a := grant("node2", r)
			a.To = "node2"
			return []Answer{grant("node1", r), a}
		}, 0, 0},
		{"a voter outside the configuration does not count", func(r Request) []Answer {
			return []Answer{grant("node1", r), grant("node9", r)}
		}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHolder("node1", 77)
			out := h.Tick(ts, hv)
			if len(out.Send) != 3 || out.SetFence || out.Next != ts+p.Retry {
				t.Fatalf("first tick: %+v", out)
			}
			r := reqTo(t, out, "witness")
			if r.From != "node1" || r.Epoch != 3 || r.Nonce != 78 || r.Duration != p.Duration || r.Release {
				t.Fatalf("request %+v", r)
			}
			var last Output
			for _, a := range tc.answers(r) {
				if o := h.Answer(ts+tc.at, a, testVoters); o.SetFence {
					last = o
				}
			}
			if last.Deadline != tc.want || h.Deadline() != tc.want {
				t.Fatalf("deadline %v (holder %v), want %v", last.Deadline, h.Deadline(), tc.want)
			}
			if tc.want != 0 && (!last.Hold || !last.Announce) {
				t.Fatalf("first hold must hold and announce: %+v", last)
			}
		})
	}
}

func TestHolderRenewAndRelease(t *testing.T) {
	const ms = time.Millisecond
	p := DefaultParams()
	at1 := View{Active: "node1", Epoch: 3, ActiveIsGPU: true}
	hv := HolderView{View: at1, SelfGPU: true, Voters: testVoters, Params: p}
	h := NewHolder("node1", 0)
	now := 10 * time.Second
	r := reqTo(t, h.Tick(now, hv), "node1")
	h.Answer(now, grant("node1", r), testVoters)
	o := h.Answer(now+ms, grant("witness", r), testVoters)
	if o.Deadline != now+p.Duration {
		t.Fatalf("deadline %v", o.Deadline)
	}
	// Holding: the next round is due after R, not before.
	if out := h.Tick(now+p.Renew-1, hv); len(out.Send) != 0 || out.Next != now+p.Renew {
		t.Fatalf("early tick: %+v", out)
	}
	now += p.Renew
	out := h.Tick(now, hv)
	r2 := reqTo(t, out, "node2")
	if r2.Nonce != r.Nonce+1 {
		t.Fatalf("renewal nonce %d after %d", r2.Nonce, r.Nonce)
	}
	h.Answer(now, grant("node2", r2), testVoters)
	o = h.Answer(now+ms, grant("node1", r2), testVoters)
	if o.Deadline != now+p.Duration || o.Announce || !o.Hold {
		t.Fatalf("renewal: %+v", o)
	}
	// A late answer of the first round changes nothing.
	if o := h.Answer(now+2*ms, grant("node2", r), testVoters); o.SetFence {
		t.Fatalf("old round counted: %+v", o)
	}
	// The view names node2: close the fence, remove the address, release
	// naming the rounds each voter granted.
	at2 := View{Active: "node2", Epoch: 4, ActiveIsGPU: true}
	out = h.Tick(now+10*ms, HolderView{View: at2, SelfGPU: true, Voters: testVoters, Params: p})
	if !out.SetFence || out.Deadline != 0 || !out.Remove || out.Hold || h.Deadline() != 0 || h.Epoch() != 0 {
		t.Fatalf("release: %+v", out)
	}
	want := map[string]uint64{"node1": r2.Nonce, "node2": r2.Nonce, "witness": r.Nonce}
	for _, e := range out.Send {
		if !e.Req.Release || e.Req.Epoch != 3 || e.Req.From != "node1" || e.Req.Nonce != want[e.To] {
			t.Fatalf("release to %s: %+v, want nonce %d", e.To, e.Req, want[e.To])
		}
	}
	if len(out.Send) != 3 {
		t.Fatalf("releases %+v", out.Send)
	}
	// Released once: later ticks send nothing.
	if out := h.Tick(now+20*ms, HolderView{View: at2, SelfGPU: true, Voters: testVoters, Params: p}); out.SetFence || len(out.Send) != 0 {
		t.Fatalf("second release: %+v", out)
	}
}

func TestHolderLapse(t *testing.T) {
	p := DefaultParams()
	at1 := View{Active: "node1", Epoch: 3, ActiveIsGPU: true}
	hv := HolderView{View: at1, SelfGPU: true, Voters: testVoters, Params: p}
	h := NewHolder("node1", 5)
	now := 10 * time.Second
	r := reqTo(t, h.Tick(now, hv), "node1")
	h.Answer(now, grant("node1", r), testVoters)
	h.Answer(now, grant("node2", r), testVoters)
	// No answers after that: the next tick is due at the deadline at the
	// latest, and once it has passed the address goes and rounds come at
	// the retry interval.
	out := h.Tick(now+p.Renew, hv)
	if out.Next != now+2*p.Renew {
		t.Fatalf("next %v", out.Next)
	}
	out = h.Tick(now+p.Duration-p.Renew/2, hv)
	if out.Next != now+p.Duration {
		t.Fatalf("next %v, want the deadline %v", out.Next, now+p.Duration)
	}
	out = h.Tick(now+p.Duration, hv)
	if !out.Remove || out.SetFence || len(out.Send) != 3 || out.Next != now+p.Duration+p.Retry {
		t.Fatalf("after the deadline: %+v", out)
	}
}

func TestHolderNotActive(t *testing.T) {
	p := DefaultParams()
	for _, hv := range []HolderView{
		{View: View{Active: "node2", Epoch: 1, ActiveIsGPU: true}, SelfGPU: true},
		{View: View{Active: "node1", Epoch: 1, ActiveIsGPU: false}, SelfGPU: true},
		{View: View{Active: "node1", Epoch: 1, ActiveIsGPU: true}, SelfGPU: false},
		{View: View{Active: "node1", Epoch: 1, ActiveIsGPU: true}, SelfGPU: true, Stopping: true},
		{},
	} {
		hv.Voters, hv.Params = testVoters, p
		h := NewHolder("node1", 0)
		if out := h.Tick(time.Second, hv); len(out.Send) != 0 || out.SetFence || out.Hold || h.Epoch() != 0 {
			t.Errorf("%+v: %+v", hv, out)
		}
	}
}

func TestHolderNewEpochSameNode(t *testing.T) {
	p := DefaultParams()
	hv := HolderView{View: View{Active: "node1", Epoch: 3, ActiveIsGPU: true}, SelfGPU: true, Voters: testVoters, Params: p}
	h := NewHolder("node1", 0)
	now := 10 * time.Second
	r := reqTo(t, h.Tick(now, hv), "node1")
	h.Answer(now, grant("node1", r), testVoters)
	h.Answer(now, grant("node2", r), testVoters)
	// A new epoch naming us again: a new round for the new epoch at once,
	// the fence kept, answers of the old epoch ignored.
	hv.Epoch = 5
	out := h.Tick(now+time.Millisecond, hv)
	r5 := reqTo(t, out, "witness")
	if r5.Epoch != 5 || out.SetFence || h.Deadline() != now+p.Duration {
		t.Fatalf("new epoch: %+v %+v", out, r5)
	}
	if o := h.Answer(now+2*time.Millisecond, grant("witness", r), testVoters); o.SetFence {
		t.Fatal("answer of epoch 3 counted in epoch 5")
	}
	h.Answer(now+2*time.Millisecond, grant("node1", r5), testVoters)
	o := h.Answer(now+2*time.Millisecond, grant("witness", r5), testVoters)
	if o.Deadline != now+time.Millisecond+p.Duration || !o.Announce {
		t.Fatalf("epoch 5 hold: %+v", o)
	}
}
