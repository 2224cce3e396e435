package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/newbieha/newbieha/internal/sdnotify"
)

// The agent under systemd (deploy/systemd/, Type=notify): READY=1 once it
// serves, STOPPING=1 when it begins to stop, and WATCHDOG=1 at half of
// WatchdogSec= while its loops tick. Outside systemd all of it does
// nothing.

// notifyState sends a state to systemd, logging a failure (the agent runs
// on without it; systemd then times the start out or kills it, and says
// so).
func notifyState(logger *slog.Logger, state string) {
	if err := sdnotify.Notify(state); err != nil {
		logger.Warn("tell systemd", "state", state, "error", err)
	}
}

// startWatchdog pings the systemd watchdog every half interval while
// alive(interval) returns nil, and stops pinging, logging why, while it
// fails: a wedged agent is then killed and restarted by systemd within
// about two intervals. It returns a function that stops the pings and
// waits for them to end; without a watchdog (WATCHDOG_USEC unset) it
// starts nothing.
func startWatchdog(logger *slog.Logger, alive func(maxAge time.Duration) error) (stop func()) {
	interval, ok := sdnotify.WatchdogInterval()
	if !ok {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchdogLoop(ctx, logger, interval, alive)
	}()
	return func() {
		cancel()
		<-done
	}
}

func watchdogLoop(ctx context.Context, logger *slog.Logger, interval time.Duration, alive func(time.Duration) error) {
	t := time.NewTicker(interval / 2) // sd_watchdog_enabled(3): ping at half the interval
	defer t.Stop()
	wasAlive, pingFailed := true, false
	for {
		if err := alive(interval); err != nil {
			if wasAlive {
				logger.Error("agent loop stalled: no longer pinging the systemd watchdog, which will restart the agent", "watchdog", interval, "error", err)
			}
			wasAlive = false
		} else {
			if !wasAlive {
				logger.Warn("agent loops tick again: pinging the systemd watchdog")
			}
			wasAlive = true
			err := sdnotify.Watchdog()
			if err != nil && !pingFailed {
				logger.Warn("ping systemd watchdog", "error", err)
			}
			pingFailed = err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
