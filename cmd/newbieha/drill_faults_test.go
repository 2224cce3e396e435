package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// service-errors sets the fault switch on the health URL's host and port,
// bounded by the fault's end, and its undo switches it back; a service
// without the switch, or no health URL, is an error saying so.
func TestSwitchServiceFault(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/fault" {
			http.NotFound(w, r)
			return
		}
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	ctx := context.Background()
	health := srv.URL + "/health"
	if err := switchServiceFault(ctx, health, 503, time.Now().Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := switchServiceFault(ctx, health, 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 2 || got[0]["mode"] != "error" || got[0]["status"] != float64(503) || got[0]["for"] != "30s" || got[1]["mode"] != "none" || got[1]["for"] != nil {
		t.Fatalf("fault switch got %v", got)
	}
	mu.Unlock()

	noSwitch := httptest.NewServer(http.NotFoundHandler())
	defer noSwitch.Close()
	for _, tc := range []struct {
		url  string
		want string
	}{
		{noSwitch.URL + "/health", "status 404"},
		{"", "service.health_url is not set"},
		{"not a url", "not a URL with a host"},
	} {
		if err := switchServiceFault(ctx, tc.url, 500, time.Now().Add(time.Minute)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.url, err, tc.want)
		}
	}
}
