package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStreamLayer is a raft.StreamLayer that speaks mutual TLS 1.3: the
// listener refuses peers without a cluster certificate and, after the
// handshake, any the admit check refuses (a server outside the current
// configuration, an operator certificate); the dialer verifies the peer's
// certificate against the cluster CA.
type tlsStreamLayer struct {
	*handshakeListener
	advertise net.Addr
	client    *tls.Config
}

func newTLSStreamLayer(bind string, advertise net.Addr, server, client *tls.Config, logger *slog.Logger) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen raft %s: %w", bind, err)
	}
	return &tlsStreamLayer{handshakeListener: newHandshakeListener(tls.NewListener(ln, server), logger), advertise: advertise, client: client}, nil
}

// setAdmit installs the check every peer's certificate must pass after the
// handshake (admitRaftPeer); until then every connection is refused.
func (t *tlsStreamLayer) setAdmit(admit func(*x509.Certificate) error) {
	t.admit.Store(&admit)
}

// Addr returns the advertised address, which raft gives to peers.
func (t *tlsStreamLayer) Addr() net.Addr { return t.advertise }

// Dial opens a TLS connection to a peer.
func (t *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), t.client)
	if err != nil {
		return nil, fmt.Errorf("dial raft %s: %w", address, err)
	}
	return conn, nil
}

// handshakeListener completes the TLS handshake of each connection in its
// own goroutine before handing it to raft, so a peer without a valid
// certificate is dropped at once (and logged) and a slow peer cannot hold up
// the others.
type handshakeListener struct {
	net.Listener
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	logger *slog.Logger
	// admit judges the peer's verified certificate; nil refuses all.
	admit atomic.Pointer[func(*x509.Certificate) error]
}

func newHandshakeListener(ln net.Listener, logger *slog.Logger) *handshakeListener {
	h := &handshakeListener{Listener: ln, conns: make(chan net.Conn), done: make(chan struct{}), logger: logger}
	go h.loop()
	return h
}

func (l *handshakeListener) loop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.logger.Error("raft accept failed", "error", err)
			_ = l.Close()
			return
		}
		go l.handshake(c.(*tls.Conn))
	}
}

func (l *handshakeListener) handshake(tc *tls.Conn) {
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		l.logger.Warn("refused raft connection", "remote", tc.RemoteAddr().String(), "error", err)
		_ = tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if err := l.admitted(tc); err != nil {
		l.logger.Warn("refused raft connection", "remote", tc.RemoteAddr().String(), "error", err)
		_ = tc.Close()
		return
	}
	select {
	case l.conns <- &admittedConn{Conn: tc, check: func() error { return l.admitted(tc) }}:
	case <-l.done:
		_ = tc.Close()
	}
}

func (l *handshakeListener) admitted(tc *tls.Conn) error {
	admit := l.admit.Load()
	if admit == nil {
		return errors.New("raft is still starting")
	}
	chains := tc.ConnectionState().VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("no verified client certificate")
	}
	return (*admit)(chains[0][0])
}

// admittedConn asks the admit check again at most once a second while the
// connection is read, and closes it once the peer is refused: a server
// removed from the configuration, or whose certificate was withdrawn,
// loses the connections it had open too, not only new ones.
type admittedConn struct {
	net.Conn
	check     func() error
	lastCheck atomic.Int64 // unix nanoseconds
}

// recheckEvery is how often an open Raft connection's peer is judged again.
const recheckEvery = time.Second

func (c *admittedConn) Read(b []byte) (int, error) {
	now := time.Now().UnixNano()
	if last := c.lastCheck.Load(); now-last >= int64(recheckEvery) && c.lastCheck.CompareAndSwap(last, now) {
		if err := c.check(); err != nil {
			_ = c.Conn.Close()
			return 0, fmt.Errorf("raft peer no longer admitted: %w", err)
		}
	}
	return c.Conn.Read(b)
}

// Accept returns the next connection whose handshake succeeded.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *handshakeListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}
