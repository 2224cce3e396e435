package cluster

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/newbieha/newbieha/cluster/hooks"
)

// HookSettings is one entry of the settings' hooks: a command or a webhook
// run on a transition (docs/hooks.md). Whoever may apply cluster settings
// (an operator) may set hooks; an exec hook runs as the agent's user.
type HookSettings struct {
	// Name names the hook in logs and metrics; default "exec-N" or
	// "webhook-N" (N its index).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Events are the kinds it runs for (hooks.NodeKinds,
	// hooks.ClusterKinds); empty means all.
	Events []string `yaml:"events,omitempty" json:"events,omitempty"`
	// Exactly one of Exec and Webhook.
	Exec    *ExecHookSettings    `yaml:"exec,omitempty" json:"exec,omitempty"`
	Webhook *WebhookHookSettings `yaml:"webhook,omitempty" json:"webhook,omitempty"`
}

// ExecHookSettings run a command: argv, no shell.
type ExecHookSettings struct {
	// Command is the argv; the first is an absolute path.
	Command          []string `yaml:"command" json:"command"`
	HookDeliveryPlan `yaml:",inline"`
}

// WebhookHookSettings post the event as JSON to a URL.
type WebhookHookSettings struct {
	// URL is http(s), with no user or password in it.
	URL string `yaml:"url" json:"url"`
	// SecretFile is the path, on every node, of the file holding the
	// HMAC-SHA256 key. Only the path is replicated; the secret never
	// enters the log.
	SecretFile       string `yaml:"secret_file,omitempty" json:"secret_file,omitempty"`
	HookDeliveryPlan `yaml:",inline"`
}

// HookDeliveryPlan says how hard a hook tries; zero values take the
// defaults (HookDefaults).
type HookDeliveryPlan struct {
	// Timeout bounds one attempt.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Retries is how many times a failed attempt is tried again; nil takes
	// the default, 0 tries once.
	Retries *int `yaml:"retries,omitempty" json:"retries,omitempty"`
	// Backoff is the pause before the first retry, doubling each time up
	// to MaxBackoff.
	Backoff    Duration `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	MaxBackoff Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
}

// The defaults of a hook's delivery plan.
const (
	DefaultExecHookTimeout    = 30 * time.Second
	DefaultExecHookRetries    = 2
	DefaultWebhookTimeout     = 10 * time.Second
	DefaultWebhookRetries     = 5
	DefaultHookBackoff        = time.Second
	DefaultHookMaxBackoff     = 30 * time.Second
	maxHooks                  = 32
	maxHookArgs, maxHookArgLn = 64, 4096
)

var hookNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// hookList turns the settings' hooks into the hooks package's, with the
// defaults filled in. It does not validate (validateHooks does).
func (s Settings) hookList() []hooks.Hook {
	out := make([]hooks.Hook, 0, len(s.Hooks))
	for i, hs := range s.Hooks {
		h := hooks.Hook{Name: hs.Name, Events: hs.Events}
		var plan HookDeliveryPlan
		timeout, retries := DefaultExecHookTimeout, DefaultExecHookRetries
		if hs.Webhook != nil {
			h.Webhook = &hooks.Webhook{URL: hs.Webhook.URL, SecretFile: hs.Webhook.SecretFile}
			plan = hs.Webhook.HookDeliveryPlan
			timeout, retries = DefaultWebhookTimeout, DefaultWebhookRetries
			if h.Name == "" {
				h.Name = fmt.Sprintf("webhook-%d", i)
			}
		}
		if hs.Exec != nil { // both set is an error hooks.Hook.Validate reports
			h.Exec = &hooks.Exec{Command: hs.Exec.Command}
			plan = hs.Exec.HookDeliveryPlan
			timeout, retries = DefaultExecHookTimeout, DefaultExecHookRetries
			if hs.Name == "" {
				h.Name = fmt.Sprintf("exec-%d", i)
			}
		}
		h.Timeout, h.Retries = timeout, retries
		if plan.Timeout != 0 {
			h.Timeout = time.Duration(plan.Timeout)
		}
		if plan.Retries != nil {
			h.Retries = *plan.Retries
		}
		h.Backoff, h.MaxBackoff = DefaultHookBackoff, DefaultHookMaxBackoff
		if plan.Backoff != 0 {
			h.Backoff = time.Duration(plan.Backoff)
		}
		if plan.MaxBackoff != 0 {
			h.MaxBackoff = time.Duration(plan.MaxBackoff)
		} else if h.Backoff > h.MaxBackoff {
			h.MaxBackoff = h.Backoff
		}
		out = append(out, h)
	}
	return out
}

// validateHooks checks the hooks, each error naming its key
// ("hooks[1].webhook.url"). Settings.Validate calls it, so the FSM checks
// hooks as every SetSettings is applied.
func (s Settings) validateHooks() error {
	if len(s.Hooks) == 0 {
		return nil
	}
	var errs []error
	if len(s.Hooks) > maxHooks {
		errs = append(errs, fmt.Errorf("key \"hooks\": %d hooks, at most %d", len(s.Hooks), maxHooks))
	}
	names := map[string]int{}
	for i, h := range s.hookList() {
		prefix := fmt.Sprintf("hooks[%d]", i)
		hs := s.Hooks[i]
		if hs.Name != "" && !hookNameRE.MatchString(hs.Name) {
			errs = append(errs, fmt.Errorf("key %q: %q: want lowercase letters, digits, '-' and '_', at most 63", prefix+".name", hs.Name))
		}
		if j, ok := names[h.Name]; ok {
			errs = append(errs, fmt.Errorf("key %q: %q is already the name of hooks[%d]", prefix+".name", h.Name, j))
		}
		names[h.Name] = i
		if hs.Exec != nil {
			if n := len(hs.Exec.Command); n > maxHookArgs {
				errs = append(errs, fmt.Errorf("key %q: %d arguments, at most %d", prefix+".exec.command", n, maxHookArgs))
			}
			for j, a := range hs.Exec.Command {
				if len(a) > maxHookArgLn {
					errs = append(errs, fmt.Errorf("key \"%s.exec.command[%d]\": %d bytes, at most %d", prefix, j, len(a), maxHookArgLn))
				}
			}
		}
		if hs.Webhook != nil {
			if n := len(hs.Webhook.URL); n > maxURLLen {
				errs = append(errs, fmt.Errorf("key %q: %d bytes, at most %d", prefix+".webhook.url", n, maxURLLen))
			}
			if n := len(hs.Webhook.SecretFile); n > maxPathLen {
				errs = append(errs, fmt.Errorf("key %q: %d bytes, at most %d", prefix+".webhook.secret_file", n, maxPathLen))
			}
		}
		if err := h.Validate(); err != nil {
			for _, e := range unjoin(err) {
				var fe *hooks.FieldError
				if errors.As(e, &fe) {
					errs = append(errs, fmt.Errorf("key \"%s.%s\": %s", prefix, fe.Key, fe.Msg))
				} else {
					errs = append(errs, fmt.Errorf("key %q: %w", prefix, e))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
