package gossip

import (
	"bytes"
	"errors"
	"testing"
)

func TestCodec_RoundTrip(t *testing.T) {
	var e encoder
	for _, tc := range []struct {
		name     string
		payload  []byte
		deflated bool
	}{
		{"empty", []byte{}, false},
		{"short", []byte(`{"ok":true}`), false},
		{"telemetry", telemetry("node1", 3, 4<<10), true},
		{"incompressible", randomBytes(t, 4<<10), false},
		{"max", bytes.Repeat([]byte("x"), MaxStateSize), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := stateMsg{Origin: "node-ü 1", Seq: 1<<63 + 5, Payload: tc.payload}
			raw, err := e.encodeState(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := raw[1]&flagDeflate != 0; got != tc.deflated {
				t.Errorf("deflated = %v, want %v (%d → %d bytes)", got, tc.deflated, len(tc.payload), len(raw))
			}
			out, err := decodeState(raw)
			if err != nil {
				t.Fatal(err)
			}
			if out.Origin != in.Origin || out.Seq != in.Seq || !bytes.Equal(out.Payload, in.Payload) {
				t.Fatalf("round trip: got %q v%d %d bytes", out.Origin, out.Seq, len(out.Payload))
			}
			t.Logf("%d bytes → %d on the wire", len(tc.payload), len(raw))
		})
	}
}

// TestCodec_TelemetryFitsABroadcast: the expected state (8 GPUs of
// telemetry plus checks, about 4 KB of JSON) compresses and, signed in the
// compact form (certificate hash), stays under broadcastMax, so it travels
// in gossip packets rather than one TCP send per peer.
func TestCodec_TelemetryFitsABroadcast(t *testing.T) {
	var e encoder
	blob := telemetry("node1", 1, 4<<10)
	raw, err := e.encodeState(stateMsg{Origin: "node1", Seq: 1, Payload: blob})
	if err != nil {
		t.Fatal(err)
	}
	id := theTestPKI.identity("node1")
	full := signAs(t, id, raw)
	env, err := decodeEnvelope(full)
	if err != nil {
		t.Fatal(err)
	}
	h := certHash(id.cert)
	b := broadcastForm(full, h[:], env.sig, raw)
	if b == nil || b[1] != formCompact {
		t.Fatalf("%d bytes of telemetry: signed %d bytes (full), no broadcast form under %d", len(blob), len(full), broadcastMax)
	}
	t.Logf("telemetry %d bytes: state message %d, signed full %d, compact %d", len(blob), len(raw), len(full), len(b))
}

func TestCodec_EncodeRejects(t *testing.T) {
	var e encoder
	if _, err := e.encodeState(stateMsg{Origin: "", Payload: nil}); err == nil {
		t.Error("empty origin encoded")
	}
	_, err := e.encodeState(stateMsg{Origin: "a", Payload: make([]byte, MaxStateSize+1)})
	if !errors.Is(err, ErrStateTooLarge) {
		t.Errorf("oversized payload: %v", err)
	}
}

func TestCodec_Bundle(t *testing.T) {
	var e encoder
	var msgs [][]byte
	for _, name := range []string{"a", "b", "c"} {
		raw, err := e.encodeState(stateMsg{Origin: name, Seq: 7, Payload: []byte(name)})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, raw)
	}
	parts, err := decodeBundle(encodeBundle(msgs))
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != len(msgs) {
		t.Fatalf("%d parts, want %d", len(parts), len(msgs))
	}
	for i := range parts {
		if !bytes.Equal(parts[i], msgs[i]) {
			t.Errorf("part %d differs", i)
		}
	}
	if parts, err := decodeBundle(encodeBundle(nil)); err != nil || len(parts) != 0 {
		t.Errorf("empty bundle: %d parts, %v", len(parts), err)
	}
}

// TestQueue_LargeStatesGoDirect: a state too large for a packet is not
// queued for broadcast (it would sit there unsent) but sent over TCP.
func TestQueue_LargeStatesGoDirect(t *testing.T) {
	g, _ := newNode(t, "node1", "127.0.0.1", nil)
	if err := g.SetLocalState(randomBytes(t, 4<<10)); err != nil {
		t.Fatal(err)
	}
	if n := g.queue.NumQueued(); n != 0 {
		t.Errorf("large state: %d queued broadcasts, want 0", n)
	}
	for i := range 3 {
		if err := g.SetLocalState(telemetry("node1", i, 4<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.queue.NumQueued(); n != 1 {
		t.Errorf("three telemetry states: %d queued broadcasts, want 1 (newer ones replace older)", n)
	}
}

// FuzzDecode: no input makes the decoders panic or return more than the
// limits allow, and what decodes re-encodes to the same content.
func FuzzDecode(f *testing.F) {
	var e encoder
	for _, p := range [][]byte{nil, []byte("x"), telemetry("n", 1, 600), bytes.Repeat([]byte{0}, 1000)} {
		raw, err := e.encodeState(stateMsg{Origin: "node1", Seq: 42, Payload: p})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		f.Add(encodeBundle([][]byte{raw, raw}))
	}
	f.Add([]byte{msgState, flagDeflate, 1, 1, 'a', 0x01, 0x00, 0x00, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeState(b); err == nil {
			if len(m.Payload) > MaxStateSize || validName(m.Origin) != nil {
				t.Fatalf("decoded past the limits: %q, %d bytes", m.Origin, len(m.Payload))
			}
			var e encoder
			raw, err := e.encodeState(m)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			again, err := decodeState(raw)
			if err != nil || again.Origin != m.Origin || again.Seq != m.Seq || !bytes.Equal(again.Payload, m.Payload) {
				t.Fatalf("re-decode: %+v, %v", again, err)
			}
		}
		if parts, err := decodeBundle(b); err == nil {
			if len(parts) > maxOrigins {
				t.Fatalf("%d parts", len(parts))
			}
			for _, p := range parts {
				_, _ = decodeState(p)
			}
		}
	})
}

func BenchmarkEncodeState(b *testing.B) {
	var e encoder
	blob := telemetry("node1", 1, 4<<10)
	b.SetBytes(int64(len(blob)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.encodeState(stateMsg{Origin: "node1", Seq: 1, Payload: blob}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeState(b *testing.B) {
	var e encoder
	blob := telemetry("node1", 1, 4<<10)
	raw, err := e.encodeState(stateMsg{Origin: "node1", Seq: 1, Payload: blob})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(blob)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeState(raw); err != nil {
			b.Fatal(err)
		}
	}
}
