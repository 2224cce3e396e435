package cluster

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestConfigApply_HugeTimingsAndOtherOutOfBoundValuesAreRefused: config
// apply accepted timings.expiry_slack: 100000h (issue 9). Every duration
// and count has an upper bound, reported once, naming the key.
func TestConfigApply_HugeTimingsAndOtherOutOfBoundValuesAreRefused(t *testing.T) {
	docs := map[string]string{
		"vip.garp_refresh":   "vip:\n  garp_refresh: 100000h\n",
		"checks":             "checks:\n" + strings.Repeat("  - {name: x}\n", maxChecks+1),
		"service.health_url": "service:\n  health_url: http://x/" + strings.Repeat("a", maxURLLen) + "\n",
	}
	walkDurations(reflect.ValueOf(DefaultSettings()), "", func(key string, _ time.Duration) {
		section, field, _ := strings.Cut(key, ".")
		docs[key] = section + ":\n  " + field + ": 100000h\n"
	})
	for key, doc := range docs {
		_, err := ParseSettings([]byte(doc))
		if err == nil {
			t.Errorf("%s: accepted\n%s", key, doc)
			continue
		}
		if n := strings.Count(err.Error(), "key "); n != 1 {
			t.Errorf("%s: %d complaints: %v", key, n, err)
		}
	}
	if _, err := ParseSettings(nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}
