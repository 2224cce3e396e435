// Command stub-model answers like the NewBie-image model server (GET /health,
// POST /generate returning a PNG) so that tests, drills and the demo can run
// without a GPU. Faults (error, slow, hang, exit) are switched at run time with
// POST /fault (with "for": a bound after which it answers normally again)
// or at start with --fault / STUB_FAULT.
//
// With --probe URL it instead GETs URL and exits 0 on a 200 answer, 1
// otherwise: the image is FROM scratch, so this is its HEALTHCHECK.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// config is the parsed command line.
type config struct {
	listen       string
	node         string
	fault        Fault
	probe        string
	probeTimeout time.Duration
	shutdown     time.Duration
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("stub-model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", envOr("STUB_LISTEN", ":8080"), "address to listen on (env STUB_LISTEN)")
	fs.StringVar(&c.node, "node", envOr("NODE_NAME", host), "node name sent in X-Served-By (env NODE_NAME, default the hostname)")
	mode := fs.String("fault", envOr("STUB_FAULT", "none"), "fault at start: none, error, slow, hang or exit (env STUB_FAULT)")
	delay := fs.Duration("fault-delay", DefaultFaultDelay, "delay of the slow fault (env STUB_FAULT_DELAY)")
	status := fs.Int("fault-status", DefaultFaultStatus, "HTTP status of the error fault (env STUB_FAULT_STATUS)")
	fs.StringVar(&c.probe, "probe", "", "GET this URL, exit 0 on 200 and 1 otherwise, then stop (HEALTHCHECK mode)")
	fs.DurationVar(&c.probeTimeout, "probe-timeout", 3*time.Second, "timeout of --probe")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", 5*time.Second, "grace period for requests on SIGTERM")
	if v := os.Getenv("STUB_FAULT_DELAY"); v != "" {
		if err := fs.Set("fault-delay", v); err != nil {
			return c, fmt.Errorf("env STUB_FAULT_DELAY: %w", err)
		}
	}
	if v := os.Getenv("STUB_FAULT_STATUS"); v != "" {
		if err := fs.Set("fault-status", v); err != nil {
			return c, fmt.Errorf("env STUB_FAULT_STATUS: %w", err)
		}
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	m, err := ParseFaultMode(*mode)
	if err != nil {
		return c, fmt.Errorf("flag --fault: %w", err)
	}
	c.fault = Fault{Mode: m, Delay: *delay, Status: *status}
	if err := c.fault.Validate(); err != nil {
		return c, fmt.Errorf("fault flags: %w", err)
	}
	if c.node == "" {
		c.node = "unknown"
	}
	return c, nil
}

func run(args []string, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "stub-model:", err)
		return 2
	}
	if c.probe != "" {
		ctx, cancel := context.WithTimeout(context.Background(), c.probeTimeout)
		defer cancel()
		if err := Probe(ctx, &http.Client{}, c.probe); err != nil {
			fmt.Fprintln(stderr, "stub-model:", err)
			return 1
		}
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if c.fault.Mode == FaultExit {
		// Set at start, the exit fault is a crash on start: it lets drills
		// run a container that dies at once.
		log.Warn("fault exit set at start: exiting", "status", ExitStatus)
		return ExitStatus
	}

	exitReq := make(chan struct{}, 1)
	srvHandler, err := NewServer(Options{
		Node:  c.node,
		Fault: c.fault,
		Exit: func() {
			select {
			case exitReq <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		fmt.Fprintln(stderr, "stub-model:", err)
		return 2
	}
	// Catch signals before listening, so that once the port answers a
	// SIGTERM is a graceful stop.
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		fmt.Fprintln(stderr, "stub-model:", err)
		return 1
	}
	srv := &http.Server{Handler: srvHandler, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("stub model server listening", "addr", ln.Addr().String(), "node", c.node, "fault", c.fault.Mode)

	code := 0
	select {
	case err := <-serveErr:
		fmt.Fprintln(stderr, "stub-model: serve:", err)
		return 1
	case <-sigCtx.Done():
		log.Info("signal received, shutting down")
	case <-exitReq:
		log.Warn("fault exit requested: exiting", "status", ExitStatus)
		code = ExitStatus
	}
	srvHandler.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.shutdown)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown", "err", err)
		_ = srv.Close()
	}
	<-serveErr
	return code
}
