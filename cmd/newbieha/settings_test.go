package main

import (
	"os"
	"strings"
	"testing"

	"github.com/newbieha/newbieha/cluster"
)

// The example in docs/operations.md (copied to docs/examples/cluster.yaml)
// must stay valid.
func TestDocumentedClusterSettingsAreValid(t *testing.T) {
	b, err := os.ReadFile("../../docs/examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), string(b)) {
		t.Fatal("docs/examples/cluster.yaml differs from the example in docs/operations.md")
	}
	s, err := cluster.ParseSettings(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateSettings(s); err != nil {
		t.Fatal(err)
	}
	cfg, err := checksOf(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Checks) != 3 || cfg.Checks[2].Name != "service" || !cfg.Checks[2].Required {
		t.Fatalf("checks %+v: want generate, gpus and the service check from health_url", cfg.Checks)
	}
}

func TestSettingsValidation_NamesTheKey(t *testing.T) {
	cases := map[string]string{
		"checks:\n  - {name: x, kind: http, timeout: 5s, interval: 1s, http: {url: 'http://a/'}}\n": "timeout",
		"checks:\n  - {name: x, kind: http, colour: red, http: {url: 'http://a/'}}\n":               "colour",
		"service:\n  runtime: docker\n  container: {name: m}\n":                                     "image",
		"service:\n  runtime: docker\n  container: {name: m, image: i, flavour: x}\n":               "flavour",
	}
	for doc, want := range cases {
		s, err := cluster.ParseSettings([]byte(doc))
		if err == nil {
			err = validateSettings(s)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to name %q", doc, err, want)
		}
	}
}
