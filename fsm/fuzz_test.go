package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// decodeSeeds is the seed corpus of FuzzDecodeCommand: every valid command
// encoding and some broken ones.
func decodeSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{
		"empty":              {},
		"type-only":          {byte(TypeSetActive)},
		"header-only":        {byte(TypeSetActive), 1},
		"unknown-type":       append([]byte{99, 1}, "{}"...),
		"unknown-ignorable":  append([]byte{byte(IgnoreUnknownFlag | 9), 1}, `{"x":1}`...),
		"unknown-version":    append([]byte{byte(TypeSetActive), 9}, "{}"...),
		"null-payload":       append([]byte{byte(TypeSetActive), 1}, "null"...),
		"open-brace":         {byte(TypeUpsertMember), 1, '{'},
		"settings-array":     append([]byte{byte(TypeSetSettings), 1}, `{"settings":[1]}`...),
		"settings-nested":    append([]byte{byte(TypeSetSettings), 1}, `{"settings":{"a":{"b":["<\u2028>",1e3,-0.5]}}}`...),
		"time-offset":        append([]byte{byte(TypeSetActive), 1}, `{"node":"gpu1","epoch":1,"time":"0001-01-01T00:30:00+01:00","reason":"r"}`...),
		"epoch-max":          append([]byte{byte(TypeSetActive), 1}, `{"epoch":18446744073709551615,"time":"2025-01-01T00:00:00Z","reason":"r"}`...),
		"wrong-field-type":   append([]byte{byte(TypeCreateToken), 1}, `{"token":{"id":7}}`...),
		"binary-garbage":     {0x01, 0x01, 0xff, 0x00, 0x7b, 0x22},
		"unknown-field-case": append([]byte{byte(TypeRemoveMember), 1}, `{"NAME":"gpu1","extra":[{}]}`...),
		"event-version-2":    append([]byte{byte(TypeRecordEvent), 2}, `{"event":{"kind":"drill"}}`...),
		"event-index-offset": append([]byte{byte(TypeRecordEvent), 1}, `{"event":{"kind":"drill","node":"","detail":"d","time":"2025-01-01T00:30:00+01:00","index":99}}`...),
	}
	for _, c := range validCommands() {
		seeds[fmt.Sprintf("valid-%d-%s", c.Type(), c.Type())] = mustEncode(t, c)
	}
	return seeds
}

// restoreSeeds is the seed corpus of FuzzRestore.
func restoreSeeds(t testing.TB) map[string][]byte {
	busy := persist(t, busyFSM(t))
	return map[string][]byte{
		"busy":         busy,
		"events":       persist(t, eventsFSM(t)),
		"empty-state":  persist(t, New(Config{})),
		"empty":        {},
		"header-only":  []byte(SnapshotMagic + "\x01"),
		"wrong-magic":  append([]byte("NBHASNAQ"), busy[len(SnapshotMagic):]...),
		"version-2":    append([]byte(SnapshotMagic+"\x02"), busy[snapshotHeaderLen:]...),
		"truncated":    busy[:len(busy)/2],
		"minimal-json": []byte(SnapshotMagic + "\x01{}"),
		"offset-times": []byte(SnapshotMagic + "\x01" + `{"members":{"a":{"name":"a","role":"gpu","raft_addr":"127.0.0.1:1","api_addr":"[::1]:2","joined_at":"2025-01-01T01:00:00+01:00"}},` +
			`"active":{"node":"a","epoch":3,"since":"2025-01-01T00:00:00-07:00","reason":"x"},` +
			`"history":[{"epoch":3,"from":"","to":"a","reason":"x","time":"2025-01-01T00:00:00Z","index":2}],"last_index":4}`),
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range decodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)

		// Apply agrees with Decode and never panics.
		fsm := New(Config{})
		for i, m := range members() {
			mustApply(t, fsm, uint64(i+1), m)
		}
		before := fsm.State()
		res := fsm.Apply(&raft.Log{Index: 10, Type: raft.LogCommand, Data: data}).(Result)
		if errors.Is(res.Err, ErrApplyPanic) {
			t.Fatalf("Apply panicked: %v", res.Err)
		}
		if res.Err != nil || err != nil {
			before.LastIndex = 10
			if !reflect.DeepEqual(fsm.State(), before) {
				t.Fatalf("state changed by an entry that was rejected or skipped (decode error %v, apply error %v)", err, res.Err)
			}
		}

		if err != nil {
			if c != nil {
				t.Fatalf("Decode returned %#v with error %v", c, err)
			}
			if !errors.Is(err, ErrUnknownCommand) && !errors.Is(err, ErrMalformedCommand) && !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("Decode error %v wraps no sentinel", err)
			}
			return
		}
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) = %v", data, err)
		}
		c2, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)) = %v (bytes %q)", c, err, b)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the command:\n%#v\n%#v", c, c2)
		}
		if b2 := mustEncode(t, c2); !bytes.Equal(b, b2) {
			t.Fatalf("encoding not stable:\n%q\n%q", b, b2)
		}
	})
}

func FuzzRestore(f *testing.F) {
	for _, s := range restoreSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := New(Config{})
		empty := fsm.State()
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore error %v does not wrap ErrBadSnapshot", err)
			}
			if !reflect.DeepEqual(fsm.State(), empty) {
				t.Fatal("failed Restore changed the state")
			}
			return
		}
		s := fsm.State()
		if s.Members == nil || s.Tokens == nil {
			t.Fatal("restored state has nil maps")
		}
		// It snapshots again, and that snapshot restores to the same state
		// and the same bytes.
		again := persist(t, fsm)
		other := New(Config{})
		if err := other.Restore(io.NopCloser(bytes.NewReader(again))); err != nil {
			t.Fatalf("restore of re-snapshot: %v", err)
		}
		if !reflect.DeepEqual(other.State(), s) {
			t.Fatalf("re-snapshot restores to a different state")
		}
		if third := persist(t, other); !bytes.Equal(third, again) {
			t.Fatalf("snapshot bytes not stable:\n%q\n%q", again, third)
		}
		// Apply still works on the restored state.
		res := fsm.Apply(&raft.Log{Index: s.LastIndex + 1, Type: raft.LogCommand,
			Data: mustEncode(t, SetMaintenance{On: !s.Maintenance, Time: t0, Reason: "fuzz"})}).(Result)
		if res.Err != nil {
			t.Fatalf("apply after restore: %v", res.Err)
		}
		if s.Active.Epoch < ^uint64(0) {
			res = fsm.Apply(&raft.Log{Index: s.LastIndex + 2, Type: raft.LogCommand,
				Data: mustEncode(t, SetActive{Epoch: s.Active.Epoch + 1, Time: at(time.Second), Reason: "fuzz"})}).(Result)
			if res.Err != nil {
				t.Fatalf("SetActive after restore: %v", res.Err)
			}
			if st := fsm.State(); validateState(&st) != nil {
				t.Fatalf("state after restore and apply breaks an invariant: %v", validateState(&st))
			}
		}
	})
}

// TestFuzzCorpus checks that the committed seed corpus under
// testdata/fuzz matches the seeds above; -update rewrites it.
func TestFuzzCorpus(t *testing.T) {
	for fuzzer, seeds := range map[string]map[string][]byte{
		"FuzzDecodeCommand": decodeSeeds(t),
		"FuzzRestore":       restoreSeeds(t),
	} {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		for name, data := range seeds {
			path := filepath.Join(dir, "seed-"+name)
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v); run: go test ./fsm -run TestFuzzCorpus -update", path, err)
			}
		}
	}
}
