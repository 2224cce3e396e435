package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// memSink is a raft.SnapshotSink in memory that can fail on demand.
type memSink struct {
	buf       bytes.Buffer
	failWrite int  // fail the n-th Write (1-based); 0 never
	shortN    int  // with failWrite, report this many bytes written and no error
	short     bool // fail by a short write instead of an error
	closeErr  error
	cancelErr error
	writes    int
	closed    bool
	cancelled bool
}

func (s *memSink) Write(p []byte) (int, error) {
	s.writes++
	if s.writes == s.failWrite {
		if s.short {
			s.buf.Write(p[:s.shortN])
			return s.shortN, nil
		}
		return 0, errors.New("disk full")
	}
	return s.buf.Write(p)
}

func (s *memSink) Close() error  { s.closed = true; return s.closeErr }
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return s.cancelErr }

// closeTracker is an io.ReadCloser that records Close.
type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

// busyFSM returns an FSM with something in every part of the state.
func busyFSM(t testing.TB) *FSM {
	t.Helper()
	f := newTestFSM(t)
	for i, c := range with(members(),
		SetActive{Node: "gpu1", Epoch: 1, Time: t0, Reason: "startup"},
		SetActive{Node: "gpu2", Epoch: 2, Time: at(time.Minute), Reason: "health:gpu1:http"},
		SetMaintenance{On: true, Time: at(2 * time.Minute), Reason: "manual"},
		SetSettings{Settings: json.RawMessage(`{"vip":"10.0.0.100/24","html":"<&>"}`)},
		CreateToken{Token: testToken("ab12cd", time.Hour)},
		CreateToken{Token: testToken("zz99zz", 48*time.Hour)},
	) {
		mustApply(t, f, uint64(i+1), c)
	}
	return f
}

// eventsFSM returns busyFSM with events appended at indexes 20..22, one of
// them about a node that is not a member.
func eventsFSM(t testing.TB) *FSM {
	t.Helper()
	f := busyFSM(t)
	mustApply(t, f, 20, RecordEvent{Event: testEvent("drill", "gpu1", "planned drill")})
	mustApply(t, f, 21, RecordEvent{Event: testEvent("vip-conflict", "gpu9", "10.0.0.100 answered by 02:42:ac:11:00:09")})
	mustApply(t, f, 22, RecordEvent{Event: Event{Kind: "note", Detail: "\"quoted\" <&> \u2028", Time: at(time.Hour)}})
	return f
}

// persist snapshots f into a memSink.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed %v, cancelled %v; want closed only", sink.closed, sink.cancelled)
	}
	return sink.buf.Bytes()
}

func TestSnapshot_RoundTrip(t *testing.T) {
	src := busyFSM(t)
	data := persist(t, src)
	if !bytes.HasPrefix(data, []byte("NBHASNAP\x01{")) {
		t.Fatalf("snapshot starts %q, want magic, version 1, JSON", data[:min(len(data), 12)])
	}

	dst := newTestFSM(t)
	changed := dst.Changed()
	rc := &closeTracker{Reader: bytes.NewReader(data)}
	if err := dst.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !rc.closed {
		t.Error("Restore did not close the reader")
	}
	assertStateEqual(t, dst.State(), src.State())
	select {
	case <-changed:
	default:
		t.Fatal("Changed did not fire on restore")
	}
	// The restored FSM goes on applying, and snapshots to the same bytes.
	if again := persist(t, dst); !bytes.Equal(again, data) {
		t.Fatalf("re-snapshot differs:\n%s\n%s", again, data)
	}
	mustApply(t, dst, 100, SetActive{Node: "gpu1", Epoch: 3, Time: at(time.Hour), Reason: "manual:failover"})
	if s := dst.State(); s.Active.Node != "gpu1" || len(s.History) != 3 || s.LastIndex != 100 {
		t.Fatalf("after restore and apply: %#v", s)
	}
}

func TestSnapshot_RoundTripEvents(t *testing.T) {
	src := eventsFSM(t)
	data := persist(t, src)
	if !bytes.Contains(data, []byte(`"events":[{"kind":"drill"`)) {
		t.Fatalf("snapshot lacks the events: %s", data)
	}
	dst := newTestFSM(t)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got := dst.State()
	assertStateEqual(t, got, src.State())
	if len(got.Events) != 3 || got.Events[1].Node != "gpu9" || got.Events[2].Index != 22 {
		t.Fatalf("events %#v", got.Events)
	}
	if again := persist(t, dst); !bytes.Equal(again, data) {
		t.Fatalf("re-snapshot differs:\n%s\n%s", again, data)
	}
	mustApply(t, dst, 30, RecordEvent{Event: testEvent("drill", "", "after restore")})
	if s := dst.State(); len(s.Events) != 4 || s.Events[3].Index != 30 {
		t.Fatalf("after restore and apply: %#v", s.Events)
	}
}

func TestSnapshot_NoEventsOmitted(t *testing.T) {
	// A state without events snapshots as before events existed, and such
	// a snapshot restores with Events nil.
	data := persist(t, busyFSM(t))
	if bytes.Contains(data, []byte(`"events"`)) {
		t.Fatalf("snapshot without events mentions them: %s", data)
	}
	f := eventsFSM(t)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if ev := f.State().Events; ev != nil {
		t.Fatalf("events %#v, want nil", ev)
	}
	empty := []byte(SnapshotMagic + "\x01" + `{"events":[]}`)
	if err := f.Restore(io.NopCloser(bytes.NewReader(empty))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if ev := f.State().Events; ev != nil {
		t.Fatalf("events %#v from an empty list, want nil", ev)
	}
}

func TestSnapshot_EmptyState(t *testing.T) {
	data := persist(t, New(Config{}))
	dst := busyFSM(t)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	assertStateEqual(t, dst.State(), New(Config{}).State())
}

func TestSnapshot_IsPointInTime(t *testing.T) {
	f := busyFSM(t)
	want := f.State()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	mustApply(t, f, 50, RemoveMember{Name: "witness"})
	mustApply(t, f, 51, SetActive{Node: "gpu1", Epoch: 9, Time: at(time.Hour), Reason: "r"})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	got := New(Config{})
	if err := got.Restore(io.NopCloser(&sink.buf)); err != nil {
		t.Fatal(err)
	}
	assertStateEqual(t, got.State(), want)
}

func TestSnapshot_PersistFailures(t *testing.T) {
	tests := []struct {
		name        string
		sink        *memSink
		want        string
		wantCancel  bool
		wantClosed  bool
		wantWrapped error
	}{
		{name: "header write fails", sink: &memSink{failWrite: 1}, want: "write snapshot header: disk full", wantCancel: true},
		{name: "state write fails", sink: &memSink{failWrite: 2}, want: "write snapshot state", wantCancel: true},
		{name: "short write", sink: &memSink{failWrite: 2, short: true, shortN: 3}, want: "short write", wantCancel: true, wantWrapped: io.ErrShortWrite},
		{name: "write and cancel fail", sink: &memSink{failWrite: 1, cancelErr: errors.New("rm failed")},
			want: "disk full\ncancel snapshot sink: rm failed", wantCancel: true},
		{name: "close fails", sink: &memSink{closeErr: errors.New("fsync failed")}, want: "close snapshot sink: fsync failed", wantClosed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := busyFSM(t).Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Release()
			err = snap.Persist(tt.sink)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Persist error %v, want one containing %q", err, tt.want)
			}
			if tt.wantWrapped != nil && !errors.Is(err, tt.wantWrapped) {
				t.Fatalf("Persist error %v does not wrap %v", err, tt.wantWrapped)
			}
			if tt.sink.cancelled != tt.wantCancel || tt.sink.closed != tt.wantClosed {
				t.Fatalf("cancelled %v closed %v, want %v %v", tt.sink.cancelled, tt.sink.closed, tt.wantCancel, tt.wantClosed)
			}
		})
	}
}

// errReader fails after yielding some bytes.
type errReader struct{ data []byte }

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("connection reset")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestRestore_Rejects(t *testing.T) {
	good := persist(t, busyFSM(t))
	body := good[snapshotHeaderLen:]
	// withState returns a snapshot of the good state changed by mod.
	withState := func(mod func(s *State)) []byte {
		s := busyFSM(t).State()
		mod(&s)
		b, err := marshalSnapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withJSON := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("snapshot lacks %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "0 bytes, shorter than the 9-byte header"},
		{"short", []byte("NBHA"), "4 bytes"},
		{"wrong magic", append([]byte("NOTASNAP\x01"), body...), `magic "NOTASNAP"`},
		{"garbage", []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"), "magic"},
		{"version 0", append([]byte("NBHASNAP\x00"), body...), "format version 0"},
		{"version 2", append([]byte("NBHASNAP\x02"), body...), "format version 2"},
		{"header only", []byte("NBHASNAP\x01"), "empty payload"},
		{"json null", []byte("NBHASNAP\x01null"), "want a JSON object"},
		{"truncated", good[:len(good)-10], "unexpected EOF"},
		{"trailing", append(append([]byte(nil), good...), "{}"...), "trailing data"},
		{"wrong type", withJSON(`"maintenance":true`, `"maintenance":"yes"`), "maintenance"},
		{"member key mismatch", withState(func(s *State) { s.Members["other"] = s.Members["gpu1"] }), `key "other" holds member named "gpu1"`},
		{"member invalid", withState(func(s *State) { m := s.Members["gpu1"]; m.RaftAddr = "x"; s.Members["gpu1"] = m }), `raft_addr "x"`},
		{"token key mismatch", withState(func(s *State) { s.Tokens["qqqqqq"] = s.Tokens["ab12cd"] }), `key "qqqqqq"`},
		{"token invalid", withState(func(s *State) { tok := s.Tokens["ab12cd"]; tok.SecretHash = "x"; s.Tokens["ab12cd"] = tok }), "secret_hash"},
		{"settings array", withState(func(s *State) { s.Settings = json.RawMessage(`[1]`) }), "want a JSON object or null"},
		{"active epoch 0 with node", withState(func(s *State) { s.Active.Epoch = 0; s.History = nil }), "epoch 0 with node"},
		{"active bad node", withState(func(s *State) { s.Active.Node = "GPU"; s.History = nil }), `node "GPU"`},
		{"history not increasing", withState(func(s *State) { s.History[1].Epoch = 1 }), "history[1]: epoch 1 not greater than previous epoch 1"},
		{"history broken chain", withState(func(s *State) { s.History[1].From = "gpu9" }), `history[1]: from "gpu9"`},
		{"history not active", withState(func(s *State) { s.Active.Epoch = 7 }), "is not the active assignment"},
		{"history too long", withState(func(s *State) {
			s.History = nil
			for i := 1; i <= HistoryLimit+1; i++ {
				s.History = append(s.History, Transition{Epoch: uint64(i), From: "gpu2", To: "gpu2", Reason: "r", Time: t0})
			}
			s.History[0].From = ""
			s.Active.Epoch = HistoryLimit + 1
		}), "1001 transitions"},
	}
	events := func(n int) []Event {
		var ev []Event
		for i := 1; i <= n; i++ {
			e := testEvent("drill", "", "d")
			e.Index = uint64(i)
			ev = append(ev, e)
		}
		return ev
	}
	tests = append(tests, []struct {
		name string
		data []byte
		want string
	}{
		{"events too many", withState(func(s *State) { s.Events = events(EventLimit + 1) }), "events: 1001 events, at most 1000 allowed"},
		{"events index decreasing", withState(func(s *State) { s.Events = events(3); s.Events[2].Index = 1 }), "events[2]: index 1 less than previous index 2"},
		{"event bad kind", withState(func(s *State) { s.Events = events(2); s.Events[1].Kind = "Drill" }), `events[1]: event kind "Drill"`},
		{"event bad node", withState(func(s *State) { s.Events = events(2); s.Events[0].Node = "-x" }), `events[0]: event drill: node "-x"`},
		{"event empty detail", withState(func(s *State) { s.Events = events(1); s.Events[0].Detail = "" }), "events[0]: event drill: detail: must not be empty"},
		{"event zero time", withState(func(s *State) { s.Events = events(1); s.Events[0].Time = time.Time{} }), "events[0]: event drill: time: must be set"},
		{"events wrong type", []byte(SnapshotMagic + "\x01" + `{"events":{"kind":"drill"}}`), "events"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := eventsFSM(t)
			before := f.State()
			changed := f.Changed()
			rc := &closeTracker{Reader: bytes.NewReader(tt.data)}
			err := f.Restore(rc)
			if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Restore error %v, want ErrBadSnapshot containing %q", err, tt.want)
			}
			if !rc.closed {
				t.Error("Restore did not close the reader")
			}
			assertStateEqual(t, f.State(), before)
			select {
			case <-changed:
				t.Fatal("Changed fired on a failed restore")
			default:
			}
		})
	}
}

func TestRestore_ReadError(t *testing.T) {
	f := busyFSM(t)
	before := f.State()
	good := persist(t, f)
	err := f.Restore(io.NopCloser(&errReader{data: good[:20]}))
	if err == nil || !strings.Contains(err.Error(), "read snapshot: connection reset") {
		t.Fatalf("Restore error %v", err)
	}
	assertStateEqual(t, f.State(), before)
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestRestore_TooLarge(t *testing.T) {
	f := busyFSM(t)
	before := f.State()
	err := f.Restore(io.NopCloser(zeros{}))
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), fmt.Sprint(MaxSnapshotSize)) {
		t.Fatalf("Restore error %v", err)
	}
	assertStateEqual(t, f.State(), before)
}

func TestRestore_NormalizesTimesAndSettings(t *testing.T) {
	data := restoreSeeds(t)["offset-times"]
	data = append(data[:len(data)-1], `,"settings":{ "a" : [ 1 ] }}`...)
	f := newTestFSM(t)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	s := f.State()
	if m := s.Members["a"]; m.JoinedAt != time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) {
		t.Fatalf("joined_at %v (%v), want midnight UTC", m.JoinedAt, m.JoinedAt.Location())
	}
	if s.Active.Since != time.Date(2025, 1, 1, 7, 0, 0, 0, time.UTC) {
		t.Fatalf("since %v, want 07:00 UTC", s.Active.Since)
	}
	if string(s.Settings) != `{"a":[1]}` {
		t.Fatalf("settings %q, want compacted", s.Settings)
	}
	if s.History == nil || s.LastIndex != 4 || s.Tokens == nil {
		t.Fatalf("state %#v", s)
	}
}
