package cluster

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster/hooks"
)

func TestParseSettings_Hooks(t *testing.T) {
	s, err := ParseSettings([]byte(`
hooks:
  - events: [became-holder, released]
    exec:
      command: [/usr/local/bin/notify.sh, MASTER]
      timeout: 5s
      retries: 0
  - name: chat
    webhook:
      url: https://hooks.example.com/newbieha
      secret_file: /etc/newbieha/hook.secret
      backoff: 2s
`))
	if err != nil {
		t.Fatal(err)
	}
	hs := s.hookList()
	if len(hs) != 2 {
		t.Fatalf("hooks %+v", hs)
	}
	x, w := hs[0], hs[1]
	if x.Name != "exec-0" || x.Timeout != 5*time.Second || x.Retries != 0 || x.Backoff != DefaultHookBackoff || len(x.Events) != 2 || x.Exec.Command[1] != "MASTER" {
		t.Errorf("exec hook %+v", x)
	}
	if w.Name != "chat" || w.Timeout != DefaultWebhookTimeout || w.Retries != DefaultWebhookRetries || w.Backoff != 2*time.Second ||
		w.MaxBackoff != DefaultHookMaxBackoff || w.Webhook.SecretFile != "/etc/newbieha/hook.secret" || len(w.Events) != 0 {
		t.Errorf("webhook %+v", w)
	}
	// The replicated form carries the secret file's path only, and reads
	// back to the same hooks.
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeSettings(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := back.hookList(); len(got) != 2 || got[0].Retries != 0 || got[1].Backoff != 2*time.Second {
		t.Fatalf("round trip: %+v", got)
	}
	if err := validateReplicatedSettings(raw); err != nil {
		t.Fatalf("the FSM's validator refuses what config apply accepts: %v", err)
	}
	// config show's YAML reads back to the same hooks.
	y, err := s.YAML()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseSettings(y)
	if err != nil {
		t.Fatalf("config show's output does not parse: %v\n%s", err, y)
	}
	if !reflect.DeepEqual(again.hookList(), hs) {
		t.Fatalf("config show round trip: %+v, want %+v", again.hookList(), hs)
	}
}

func TestParseSettings_NoHooksIsUnchanged(t *testing.T) {
	// Settings from before hooks existed encode without the key, so the
	// documents in existing logs and snapshots read and write the same.
	raw, err := json.Marshal(DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "hooks") {
		t.Fatalf("default settings carry a hooks key: %s", raw)
	}
}

func TestParseSettings_BadHooksNameTheKey(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"hooks:\n  - exec: {command: [/bin/true]}\n  - webhook: {url: 'ftp://x'}\n", `key "hooks[1].webhook.url": "ftp://x" is not an http(s) URL`},
		{"hooks:\n  - webhook: {url: 'https://u:pw@x/y'}\n", `key "hooks[0].webhook.url": must not carry a user or password`},
		{"hooks:\n  - webhook: {url: 'https://x/y', secret_file: hook.secret}\n", `key "hooks[0].webhook.secret_file": "hook.secret" is not an absolute path`},
		{"hooks:\n  - exec: {command: [notify.sh]}\n", `key "hooks[0].exec.command[0]": "notify.sh" is not an absolute path`},
		{"hooks:\n  - exec: {command: []}\n", `key "hooks[0].exec.command": must name a program`},
		{"hooks:\n  - {events: [became-holder]}\n", `key "hooks[0].exec": set exactly one of exec and webhook`},
		{"hooks:\n  - exec: {command: [/bin/true]}\n    webhook: {url: 'https://x'}\n", `key "hooks[0].exec": set exactly one of exec and webhook, not both`},
		{"hooks:\n  - exec: {command: [/bin/true]}\n    events: [became-master]\n", `key "hooks[0].events[0]": "became-master" is not an event`},
		{"hooks:\n  - exec: {command: [/bin/true], timeout: 1h}\n", `key "hooks[0].exec.timeout": 1h0m0s is over the limit of 10m0s`},
		{"hooks:\n  - exec: {command: [/bin/true], timeout: -1s}\n", `key "hooks[0].exec.timeout": -1s must be above 0`},
		{"hooks:\n  - webhook: {url: 'https://x', retries: 50}\n", `key "hooks[0].webhook.retries": 50 must be 0-20`},
		{"hooks:\n  - webhook: {url: 'https://x', backoff: 10s, max_backoff: 1s}\n", `key "hooks[0].webhook.max_backoff": 1s is below backoff 10s`},
		{"hooks:\n  - name: a\n    exec: {command: [/bin/true]}\n  - name: a\n    exec: {command: [/bin/true]}\n", `key "hooks[1].name": "a" is already the name of hooks[0]`},
		{"hooks:\n  - name: 'Bad Name'\n    exec: {command: [/bin/true]}\n", `key "hooks[0].name": "Bad Name"`},
		{"hooks:\n  - exec: {command: [/bin/true], shell: true}\n", `unknown key "shell"`},
		{"hooks:\n  - webhook: {url: 'https://x', secret: hunter2hunter2hunter2}\n", `unknown key "secret"`},
		{"hooks:\n  - exec: {command: [/bin/true], retries: many}\n", `hooks[0].exec.retries`},
	} {
		_, err := ParseSettings([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.doc, err, c.want)
		}
	}
}

func TestValidateHooks_EveryKindIsKnown(t *testing.T) {
	for _, k := range append(append([]string{}, hooks.NodeKinds...), hooks.ClusterKinds...) {
		s := DefaultSettings()
		s.Hooks = []HookSettings{{Events: []string{k}, Exec: &ExecHookSettings{Command: []string{"/bin/true"}}}}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
}
