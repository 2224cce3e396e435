package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// Client talks to the local agent over its unix socket. The CLI uses it.
type Client struct {
	socket string
	http   *http.Client
}

// NewLocalClient returns a client for the agent whose data dir is dataDir.
func NewLocalClient(dataDir string) *Client {
	sock := SocketPath(dataDir)
	return &Client{
		socket: sock,
		http: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			}},
		},
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("local agent at %s: %w (is `newbieha agent` running with this --data-dir?)", c.socket, err)
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

// Status returns the cluster status as the local agent sees it.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// CreateToken asks for a fresh join token valid for ttl (0: default) that
// admits role ("": gpu).
func (c *Client) CreateToken(ctx context.Context, ttl time.Duration, role fsm.Role) (TokenResponse, error) {
	var t TokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens", TokenRequest{TTL: Duration(ttl), Role: role}, &t)
	return t, err
}

// Remove removes a member from the cluster.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/remove", RemoveRequest{Name: name}, nil)
}

// Failover asks for a planned handover of the active role.
func (c *Client) Failover(ctx context.Context, req FailoverRequest) (FailoverResponse, error) {
	var r FailoverResponse
	err := c.do(ctx, http.MethodPost, "/v1/failover", req, &r)
	return r, err
}

// Maintenance turns maintenance mode on or off.
func (c *Client) Maintenance(ctx context.Context, on bool, reason string) error {
	return c.do(ctx, http.MethodPost, "/v1/maintenance", MaintenanceRequest{On: on, Reason: reason}, nil)
}

// History returns the transitions of the active role, oldest first.
func (c *Client) History(ctx context.Context) ([]fsm.Transition, error) {
	var h []fsm.Transition
	err := c.do(ctx, http.MethodGet, "/v1/history", nil, &h)
	return h, err
}

// ConfigShow returns the live cluster settings.
func (c *Client) ConfigShow(ctx context.Context) (ConfigResponse, error) {
	var r ConfigResponse
	err := c.do(ctx, http.MethodGet, "/v1/config", nil, &r)
	return r, err
}

// ConfigApply validates and commits a cluster settings document (YAML).
func (c *Client) ConfigApply(ctx context.Context, doc []byte) (ConfigResponse, error) {
	var r ConfigResponse
	err := c.do(ctx, http.MethodPost, "/v1/config", ConfigRequest{YAML: string(doc)}, &r)
	return r, err
}

// TransferLeader asks the leader to hand Raft leadership to a member.
func (c *Client) TransferLeader(ctx context.Context, to string) error {
	return c.do(ctx, http.MethodPost, "/v1/raft/transfer-leader", TransferLeaderRequest{To: to}, nil)
}

// Drill forces a check result on a node for a while.
func (c *Client) Drill(ctx context.Context, req DrillRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/drill/inject", req, nil)
}

// Events returns the audit events (drills, VIP conflicts), oldest first.
func (c *Client) Events(ctx context.Context) ([]fsm.Event, error) {
	var e []fsm.Event
	err := c.do(ctx, http.MethodGet, "/v1/events", nil, &e)
	return e, err
}
