package cluster

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"

	"github.com/newbieha/newbieha/fsm"
)

// Client talks to an agent's operator API: the local agent over its unix
// socket as root, or any member over mTLS with an operator certificate.
// The CLI uses it.
type Client struct {
	// base is the URL the paths are appended to; where names the agent
	// in errors.
	base, where string
	http        *http.Client
}

// NewRemoteClient returns a client for the member whose API listens at
// server (host:port), presenting the operator certificate in certDir
// (pki.CACertFile, pki.OperatorCertFile, pki.OperatorKeyFile, as `newbieha
// operator cert` writes them). A member that cannot carry out a change
// itself redirects the client to the one that can (the leader).
func NewRemoteClient(server, certDir string) (*Client, error) {
	if _, _, err := net.SplitHostPort(server); err != nil {
		return nil, fmt.Errorf("server %q: want host:port of a member's API: %w", server, err)
	}
	read := func(name string) ([]byte, error) {
		p := filepath.Join(certDir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("operator certificate: %w (make one with: newbieha operator cert --name NAME --out %s)", err, certDir)
		}
		return b, nil
	}
	var ca, cert *x509.Certificate
	var key crypto.Signer
	for _, f := range []struct {
		name  string
		parse func([]byte) error
	}{
		{pki.CACertFile, func(b []byte) (err error) { ca, err = pki.ParseCert(b); return }},
		{pki.OperatorCertFile, func(b []byte) (err error) { cert, err = pki.ParseCert(b); return }},
		{pki.OperatorKeyFile, func(b []byte) (err error) { key, err = pki.ParseKey(b); return }},
	} {
		b, err := read(f.name)
		if err != nil {
			return nil, err
		}
		if err := f.parse(b); err != nil {
			return nil, fmt.Errorf("operator certificate: parse %s: %w", filepath.Join(certDir, f.name), err)
		}
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("operator certificate %s expired at %s; make a new one with: newbieha operator cert", filepath.Join(certDir, pki.OperatorCertFile), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return &Client{
		base:  "https://" + server,
		where: "member " + server,
		http: &http.Client{
			Timeout:   5 * time.Minute,
			Transport: &http.Transport{TLSClientConfig: pki.OperatorClientConfig(ca, cert, key)},
		},
	}, nil
}

// NewLocalClient returns a client for the agent whose data dir is dataDir.
func NewLocalClient(dataDir string) *Client {
	sock := SocketPath(dataDir)
	return &Client{
		base:  "http://agent",
		where: "local agent at " + sock + " (is `newbieha agent` running with this --data-dir?)",
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
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", c.where, err)
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

// Remove removes a member from the cluster; the leader refuses the
// active node, or a voter the quorum needs, with ErrNeedsForce.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.RemoveWith(ctx, RemoveRequest{Name: name})
}

// RemoveWith removes a member as req says (Force skips RemoveRefusal).
func (c *Client) RemoveWith(ctx context.Context, req RemoveRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/remove", req, nil)
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

// DrillPartition cuts a node off from peers for a while, or heals it.
func (c *Client) DrillPartition(ctx context.Context, req DrillPartitionRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/drill/partition", req, nil)
}

// DrillEvent records a drill's start or end in the history.
func (c *Client) DrillEvent(ctx context.Context, req DrillEventRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/drill/event", req, nil)
}

// Events returns the audit events (drills, VIP conflicts), oldest first.
func (c *Client) Events(ctx context.Context) ([]fsm.Event, error) {
	var e []fsm.Event
	err := c.do(ctx, http.MethodGet, "/v1/events", nil, &e)
	return e, err
}

// OperatorCert asks the local agent (root only, a GPU node) to sign an
// operator certificate for the public key in req.
func (c *Client) OperatorCert(ctx context.Context, req OperatorCertRequest) (OperatorCertResponse, error) {
	var r OperatorCertResponse
	err := c.do(ctx, http.MethodPost, "/v1/operator/cert", req, &r)
	return r, err
}
