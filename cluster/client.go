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

// CreateToken asks for a fresh join token valid for ttl (0: default).
func (c *Client) CreateToken(ctx context.Context, ttl time.Duration) (TokenResponse, error) {
	var t TokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens", TokenRequest{TTL: Duration(ttl)}, &t)
	return t, err
}

// Remove removes a member from the cluster.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/remove", RemoveRequest{Name: name}, nil)
}
