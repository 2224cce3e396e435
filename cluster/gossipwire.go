package cluster

import (
	"encoding/json"
	"time"

	"github.com/newbieha/newbieha/cluster/gossip"
)

// gossipState is what each agent spreads about itself over gossip: its
// health verdict and report (checks, GPU telemetry) and whether it holds
// the VIP. Status on any member reads the others' from its gossip view.
type gossipState struct {
	Healthy      bool   `json:"healthy"`
	HealthReason string `json:"health_reason,omitempty"`
	Health       any    `json:"health,omitempty"`
	HoldsVIP     bool   `json:"holds_vip"`
}

// startGossip joins the encrypted gossip cluster.
func (a *Agent) startGossip() error {
	g, err := gossip.New(gossip.Config{
		Name:          a.Name(),
		BindAddr:      a.cfg.Node.BindAddr(),
		BindPort:      a.cfg.Node.Ports.Gossip,
		AdvertiseAddr: a.cfg.Node.Advertise,
		AdvertisePort: a.cfg.Node.Ports.Gossip,
		Key:           a.gossipKey,
		Logger:        a.log.Named("gossip"),
	})
	if err != nil {
		return err
	}
	a.gossip = g
	return nil
}

// gossipLoop publishes this node's state every 500 ms (unchanged states
// cost nothing: gossip drops equal blobs) and joins members it does not
// see yet, from their addresses in the replicated state.
func (a *Agent) gossipLoop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		a.publishGossip()
		a.joinGossip()
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) publishGossip() {
	healthy, why := a.ownHealth()
	s := gossipState{Healthy: healthy, HealthReason: why, HoldsVIP: a.lease.holdsVIP()}
	if a.cfg.Health != nil {
		s.Health = a.cfg.Health.Detail()
	}
	b, err := json.Marshal(s)
	if err != nil {
		a.log.Error("encode gossip state", "error", err)
		return
	}
	if err := a.gossip.SetLocalState(b); err != nil {
		a.log.Warn("publish gossip state", "error", err)
	}
}

func (a *Agent) joinGossip() {
	alive := map[string]bool{}
	for _, m := range a.gossip.Members() {
		if m.Alive {
			alive[m.Name] = true
		}
	}
	var addrs []string
	for _, m := range a.node.fsm.State().Members {
		if m.Name != a.Name() && !alive[m.Name] && m.GossipAddr != "" {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := a.gossip.Join(addrs); err != nil {
		a.log.Debug("gossip join", "addrs", addrs, "error", err)
	}
}

// gossipView returns each member's gossip view by name.
func (a *Agent) gossipView() map[string]gossipMember {
	out := map[string]gossipMember{}
	for _, m := range a.gossip.Members() {
		gm := gossipMember{Alive: m.Alive, UpdatedAt: m.UpdatedAt}
		if len(m.State) > 0 && json.Unmarshal(m.State, &gm.State) == nil {
			gm.HasState = true
		}
		out[m.Name] = gm
	}
	return out
}

type gossipMember struct {
	Alive     bool
	HasState  bool
	State     gossipState
	UpdatedAt time.Time
}
