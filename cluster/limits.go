package cluster

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// serverLimits bound how long one client may hold a connection of an API
// server. Without them a client that sends a request body one byte at a
// time, or opens a keep-alive connection and sends nothing, holds a
// goroutine and a file descriptor for ever (docs/security.md).
type serverLimits struct {
	// readHeader bounds the TLS handshake and the request headers.
	readHeader time.Duration
	// read bounds the whole request, body included (a slowloris body).
	read time.Duration
	// write bounds the handler and the response, from the end of the
	// headers; it must exceed the longest handler (a forwarded failover
	// holds for a few ApplyTimeouts).
	write time.Duration
	// idle closes a keep-alive connection that sends no next request.
	idle time.Duration
}

var (
	// remoteLimits are those of the mTLS API port, which anyone on the
	// network can reach (join needs no certificate), and of the metrics
	// port.
	remoteLimits = serverLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 60 * time.Second, idle: 15 * time.Second}
	// localLimits are those of the unix socket (root only): the same,
	// with room for a slow operator command.
	localLimits = serverLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 5 * time.Minute, idle: 15 * time.Second}
)

// limitServer sets l on s and returns s.
func limitServer(s *http.Server, l serverLimits) *http.Server {
	s.ReadHeaderTimeout = l.readHeader
	s.ReadTimeout = l.read
	s.WriteTimeout = l.write
	s.IdleTimeout = l.idle
	s.MaxHeaderBytes = 16 << 10
	return s
}

// Connection caps per listener: at most this many connections are open at
// once (TLS handshakes included); the next one waits in the kernel's
// backlog until one closes, and the timeouts above bound how long each may
// stay. So a flood of connections runs the agent out of neither file
// descriptors nor goroutines. The API port serves the members (a few
// connections each, see Agent.peers), the CLI and joins: 256 leaves room
// for all of them many times over.
const (
	remoteMaxConns  = 256
	metricsMaxConns = 32
)

// capListener returns ln limited to n connections open at once: Accept
// waits while n are open. n must be at least 1.
func capListener(ln net.Listener, n int) net.Listener {
	return netutil.LimitListener(ln, n)
}

// listenCapped listens on addr and caps the listener at n connections.
func listenCapped(network, addr string, n int) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return capListener(ln, n), nil
}

// Join rate limit per source address: a token bucket of joinBurst joins,
// refilled at joinRate per second. Enough for an operator who joins a few
// nodes, or retries, at once; a guesser gets joinRate tries a second from
// one address (token secrets are 128-bit: this bounds the load a flood
// puts on the member, not the odds of a guess).
const (
	joinRate  = 5
	joinBurst = 10
	// joinBucketsMax bounds the addresses tracked; past it, buckets that
	// have refilled completely (they carry no state worth keeping) are
	// dropped, and if none has, the join is refused like an over-rate one.
	joinBucketsMax = 4096
)

// limitJoins rate-limits POST /v1/join per source IP address (joinRate a
// second, bursts of joinBurst): a join over the rate is answered 429 with
// a Retry-After header, before its body is read. Requests from a member's
// certificate (a join a member passes on) and every other request go
// through untouched: the member that received the join counted it. Each
// call returns a handler with its own buckets.
func limitJoins(next http.Handler) http.Handler {
	return newJoinLimiter(joinRate, joinBurst, time.Now).middleware(next)
}

// joinLimiter holds a token bucket per source address.
type joinLimiter struct {
	rate  float64 // tokens a second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

// bucket is a token bucket: tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

func newJoinLimiter(rate, burst float64, now func() time.Time) *joinLimiter {
	return &joinLimiter{rate: rate, burst: burst, now: now, buckets: make(map[netip.Addr]*bucket)}
}

// allow takes a token from addr's bucket. When there is none it returns
// false and how long until there is.
func (l *joinLimiter) allow(addr netip.Addr) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[addr]
	if !ok {
		if len(l.buckets) >= joinBucketsMax {
			l.sweep(now)
		}
		if len(l.buckets) >= joinBucketsMax {
			return false, time.Second
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep drops the buckets that would be full by now. l.mu is held.
func (l *joinLimiter) sweep(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, a)
		}
	}
}

func (l *joinLimiter) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/join" ||
			(r.TLS != nil && len(r.TLS.VerifiedChains) > 0) {
			next.ServeHTTP(w, r)
			return
		}
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil { // not TCP (a test, the unix socket): nothing to key on
			next.ServeHTTP(w, r)
			return
		}
		ok, wait := l.allow(ap.Addr().Unmap())
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		secs := int(math.Ceil(wait.Seconds()))
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(ErrorBody{
			Error: fmt.Sprintf("too many joins from %s; try again in %d s", ap.Addr().Unmap(), secs),
			Code:  "rate_limited",
		})
	})
}
