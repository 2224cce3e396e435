package hooks

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"time"
)

// Limits on a hook. Settings outside them are refused (cluster names the
// key); inside them any value is one the agent can run with.
const (
	// MaxTimeout bounds one attempt.
	MaxTimeout = 10 * time.Minute
	// MaxRetries bounds the attempts after the first.
	MaxRetries = 20
	// MaxBackoff bounds the pause between two attempts.
	MaxBackoff = time.Hour
	// DefaultQueueLen is how many events wait for one hook before the next
	// is dropped.
	DefaultQueueLen = 64
)

// Hook is one hook: what it runs, for which events, and how hard it tries.
type Hook struct {
	// Name names the hook in logs and metrics; unique among the hooks.
	Name string
	// Events are the kinds it runs for; empty means every kind.
	Events []string
	// Exactly one of Exec and Webhook is set.
	Exec    *Exec
	Webhook *Webhook
	// Timeout bounds one attempt (> 0).
	Timeout time.Duration
	// Retries is how many times a failed attempt is tried again.
	Retries int
	// Backoff is the pause before the first retry; each next pause
	// doubles, up to MaxBackoff (the field).
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// Exec runs a command.
type Exec struct {
	// Command is the argv; Command[0] is an absolute path (no shell, no
	// PATH lookup).
	Command []string
}

// Webhook posts the event as JSON.
type Webhook struct {
	// URL is an http or https URL without user information.
	URL string
	// SecretFile holds the HMAC-SHA256 key (read at each delivery, so a
	// rotated secret takes effect at once). Empty: the body is unsigned.
	SecretFile string
}

// Wants reports whether h runs for events of kind k.
func (h Hook) Wants(k string) bool { return len(h.Events) == 0 || slices.Contains(h.Events, k) }

// FieldError is a bad value in a hook, with the key relative to the hook
// ("webhook.url", "events[2]").
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Key, e.Msg) }

// Validate checks one hook on its own; each error is a *FieldError.
func (h Hook) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	kind := "exec"
	switch {
	case h.Exec != nil && h.Webhook != nil:
		bad("exec", "set exactly one of exec and webhook, not both")
	case h.Exec == nil && h.Webhook == nil:
		bad("exec", "set exactly one of exec and webhook")
	case h.Webhook != nil:
		kind = "webhook"
	}
	if h.Name == "" {
		bad("name", "must not be empty")
	}
	for i, k := range h.Events {
		if !KnownKind(k) {
			bad(fmt.Sprintf("events[%d]", i), "%q is not an event (want one of %v or %v)", k, NodeKinds, ClusterKinds)
		} else if slices.Index(h.Events, k) != i {
			bad(fmt.Sprintf("events[%d]", i), "%q is listed twice", k)
		}
	}
	if h.Exec != nil {
		switch {
		case len(h.Exec.Command) == 0:
			bad("exec.command", "must name a program")
		case !filepath.IsAbs(h.Exec.Command[0]):
			bad("exec.command[0]", "%q is not an absolute path (no shell and no PATH lookup: write /bin/sh, -c, ... for shell syntax)", h.Exec.Command[0])
		}
		for i, a := range h.Exec.Command {
			if slices.Contains([]byte(a), 0) {
				bad(fmt.Sprintf("exec.command[%d]", i), "contains a NUL byte")
			}
		}
	}
	if h.Webhook != nil {
		u, err := url.Parse(h.Webhook.URL)
		switch {
		case h.Webhook.URL == "":
			bad("webhook.url", "must be set")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("webhook.url", "%q is not an http(s) URL", h.Webhook.URL)
		case u.User != nil:
			bad("webhook.url", "must not carry a user or password (the URL is in the replicated settings and the logs): put a secret in webhook.secret_file")
		}
		if f := h.Webhook.SecretFile; f != "" && !filepath.IsAbs(f) {
			bad("webhook.secret_file", "%q is not an absolute path", f)
		}
	}
	switch {
	case h.Timeout <= 0:
		bad(kind+".timeout", "%v must be above 0", h.Timeout)
	case h.Timeout > MaxTimeout:
		bad(kind+".timeout", "%v is over the limit of %v", h.Timeout, MaxTimeout)
	}
	if h.Retries < 0 || h.Retries > MaxRetries {
		bad(kind+".retries", "%d must be 0-%d", h.Retries, MaxRetries)
	}
	if h.Backoff < 0 || h.Backoff > MaxBackoff {
		bad(kind+".backoff", "%v must be 0-%v", h.Backoff, MaxBackoff)
	}
	switch {
	case h.MaxBackoff < 0 || h.MaxBackoff > MaxBackoff:
		bad(kind+".max_backoff", "%v must be 0-%v", h.MaxBackoff, MaxBackoff)
	case h.MaxBackoff < h.Backoff:
		bad(kind+".max_backoff", "%v is below backoff %v", h.MaxBackoff, h.Backoff)
	}
	return errors.Join(errs...)
}

// backoff returns the pause before retry n (1 for the first).
func (h Hook) backoff(n int) time.Duration {
	d := h.Backoff
	for i := 1; i < n && d < h.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, h.MaxBackoff)
}

// same reports whether a and b run alike (a hook whose settings did not
// change keeps its queue across a settings change).
func same(a, b Hook) bool { return reflect.DeepEqual(a, b) }
