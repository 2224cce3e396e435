//go:build !(cgo && linux)

package gpu

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStub checks what a CGO_ENABLED=0 build (the witness) answers.
func TestStub(t *testing.T) {
	if BuiltIn {
		t.Fatal("BuiltIn in a build without cgo")
	}
	r := New(Options{})
	if _, err := r.Devices(context.Background()); !errors.Is(err, ErrNotBuiltIn) || err.Error() != "GPU support not built in" {
		t.Fatalf("Devices: %v", err)
	}
	if _, err := r.XidEvents(time.Time{}); !errors.Is(err, ErrNotBuiltIn) {
		t.Fatalf("XidEvents: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
