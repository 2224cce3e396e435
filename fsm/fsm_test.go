package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// members is the usual setup: two GPU nodes and a witness.
func members() []Command {
	return []Command{
		UpsertMember{Member: gpuMember("gpu1", "10.0.0.1")},
		UpsertMember{Member: gpuMember("gpu2", "10.0.0.2")},
		UpsertMember{Member: witnessMember()},
	}
}

func with(base []Command, more ...Command) []Command {
	return append(append([]Command(nil), base...), more...)
}

func TestApply_Commands(t *testing.T) {
	activeGPU1 := SetActive{Node: "gpu1", Epoch: 5, Time: at(time.Minute), Reason: "startup"}
	tests := []struct {
		name  string
		setup []Command
		cmd   Command
		raw   bool  // frame cmd without validating it
		want  error // nil: accepted
		check func(t *testing.T, s State)
	}{
		// UpsertMember
		{name: "upsert adds", cmd: UpsertMember{Member: gpuMember("gpu1", "10.0.0.1")},
			check: func(t *testing.T, s State) {
				if m := s.Members["gpu1"]; !reflect.DeepEqual(m, gpuMember("gpu1", "10.0.0.1")) || len(s.Members) != 1 {
					t.Fatalf("members %#v", s.Members)
				}
			}},
		{name: "upsert replaces", setup: members(), cmd: UpsertMember{Member: gpuMember("gpu2", "10.0.0.22")},
			check: func(t *testing.T, s State) {
				if m := s.Members["gpu2"]; m.RaftAddr != "10.0.0.22:7000" || len(s.Members) != 3 {
					t.Fatalf("members %#v", s.Members)
				}
			}},
		{name: "upsert stores UTC", cmd: UpsertMember{Member: func() Member {
			m := gpuMember("gpu1", "10.0.0.1")
			m.JoinedAt = t0.In(time.FixedZone("X", 7200))
			return m
		}()},
			check: func(t *testing.T, s State) {
				if m := s.Members["gpu1"]; m.JoinedAt != t0 {
					t.Fatalf("joined_at %v (%v), want %v", m.JoinedAt, m.JoinedAt.Location(), t0)
				}
			}},
		{name: "upsert active gpu as witness", setup: with(members(), activeGPU1),
			cmd: UpsertMember{Member: func() Member { m := witnessMember(); m.Name = "gpu1"; return m }()}, want: ErrNotGPU},
		{name: "upsert invalid", setup: members(), raw: true,
			cmd: UpsertMember{Member: func() Member { m := gpuMember("gpu3", "10.0.0.3"); m.APIAddr = "nowhere"; return m }()}, want: ErrInvalidCommand},

		// RemoveMember
		{name: "remove", setup: members(), cmd: RemoveMember{Name: "gpu2"},
			check: func(t *testing.T, s State) {
				if _, ok := s.Members["gpu2"]; ok || len(s.Members) != 2 {
					t.Fatalf("members %#v", s.Members)
				}
			}},
		{name: "remove active keeps assignment", setup: with(members(), activeGPU1), cmd: RemoveMember{Name: "gpu1"},
			check: func(t *testing.T, s State) {
				if _, ok := s.Members["gpu1"]; ok || s.Active.Node != "gpu1" || s.Active.Epoch != 5 {
					t.Fatalf("members %v, active %#v", s.Members, s.Active)
				}
			}},
		{name: "remove unknown", setup: members(), cmd: RemoveMember{Name: "gpu9"}, want: ErrUnknownMember},
		{name: "remove invalid", setup: members(), cmd: RemoveMember{Name: "GPU1"}, raw: true, want: ErrInvalidCommand},

		// SetActive
		{name: "active first", setup: members(), cmd: activeGPU1,
			check: func(t *testing.T, s State) {
				want := Assignment{Node: "gpu1", Epoch: 5, Since: at(time.Minute), Reason: "startup"}
				if s.Active != want {
					t.Fatalf("active %#v, want %#v", s.Active, want)
				}
				wantH := []Transition{{Epoch: 5, From: "", To: "gpu1", Reason: "startup", Time: at(time.Minute), Index: 4}}
				if fmt.Sprint(s.History) != fmt.Sprint(wantH) {
					t.Fatalf("history %#v, want %#v", s.History, wantH)
				}
			}},
		{name: "active moves", setup: with(members(), activeGPU1),
			cmd: SetActive{Node: "gpu2", Epoch: 6, Time: at(2 * time.Minute), Reason: "health:gpu1:http"},
			check: func(t *testing.T, s State) {
				if s.Active.Node != "gpu2" || s.Active.Epoch != 6 || len(s.History) != 2 {
					t.Fatalf("active %#v, history %#v", s.Active, s.History)
				}
				if h := s.History[1]; h.From != "gpu1" || h.To != "gpu2" || h.Index != 5 || h.Reason != "health:gpu1:http" {
					t.Fatalf("transition %#v", h)
				}
			}},
		{name: "active nobody", setup: with(members(), activeGPU1),
			cmd: SetActive{Epoch: 9, Time: at(2 * time.Minute), Reason: "leader-lost"},
			check: func(t *testing.T, s State) {
				if s.Active.Node != "" || s.Active.Epoch != 9 || s.History[1].From != "gpu1" || s.History[1].To != "" {
					t.Fatalf("active %#v, history %#v", s.Active, s.History)
				}
			}},
		{name: "active same epoch", setup: with(members(), activeGPU1),
			cmd: SetActive{Node: "gpu2", Epoch: 5, Time: at(time.Hour), Reason: "r"}, want: ErrStaleEpoch},
		{name: "active older epoch", setup: with(members(), activeGPU1),
			cmd: SetActive{Node: "gpu2", Epoch: 4, Time: at(time.Hour), Reason: "r"}, want: ErrStaleEpoch},
		{name: "active unknown node", setup: members(),
			cmd: SetActive{Node: "gpu9", Epoch: 1, Time: t0, Reason: "r"}, want: ErrUnknownMember},
		{name: "active witness", setup: members(),
			cmd: SetActive{Node: "witness", Epoch: 1, Time: t0, Reason: "r"}, want: ErrNotGPU},
		{name: "active epoch 0", setup: members(), raw: true,
			cmd: SetActive{Node: "gpu1", Time: t0, Reason: "r"}, want: ErrInvalidCommand},
		{name: "active zero time", setup: members(), raw: true,
			cmd: SetActive{Node: "gpu1", Epoch: 1, Reason: "r"}, want: ErrInvalidCommand},
		{name: "active no reason", setup: members(), raw: true,
			cmd: SetActive{Node: "gpu1", Epoch: 1, Time: t0}, want: ErrInvalidCommand},

		// SetMaintenance
		{name: "maintenance on", cmd: SetMaintenance{On: true, Time: t0, Reason: "manual"},
			check: func(t *testing.T, s State) {
				if !s.Maintenance {
					t.Fatal("maintenance off")
				}
			}},
		{name: "maintenance off", setup: []Command{SetMaintenance{On: true, Time: t0, Reason: "manual"}},
			cmd: SetMaintenance{Time: at(time.Minute), Reason: "manual"},
			check: func(t *testing.T, s State) {
				if s.Maintenance {
					t.Fatal("maintenance on")
				}
			}},
		{name: "maintenance no reason", raw: true, cmd: SetMaintenance{On: true, Time: t0}, want: ErrInvalidCommand},
		{name: "maintenance keeps when, why and who", cmd: SetMaintenance{On: true, Time: t0, Reason: "driver upgrade", By: "alice"},
			check: func(t *testing.T, s State) {
				want := MaintenanceInfo{Since: t0, Reason: "driver upgrade", By: "alice"}
				if s.MaintenanceInfo == nil || *s.MaintenanceInfo != want {
					t.Fatalf("info %+v, want %+v", s.MaintenanceInfo, want)
				}
			}},
		{name: "maintenance on again keeps since", setup: []Command{SetMaintenance{On: true, Time: t0, Reason: "first", By: "alice"}},
			cmd: SetMaintenance{On: true, Time: at(time.Hour), Reason: "second", By: "root@gpu1"},
			check: func(t *testing.T, s State) {
				want := MaintenanceInfo{Since: t0, Reason: "second", By: "root@gpu1"}
				if s.MaintenanceInfo == nil || *s.MaintenanceInfo != want {
					t.Fatalf("info %+v, want %+v", s.MaintenanceInfo, want)
				}
			}},
		{name: "maintenance off drops the info", setup: []Command{SetMaintenance{On: true, Time: t0, Reason: "r", By: "alice"}},
			cmd: SetMaintenance{Time: at(time.Minute), Reason: "done"},
			check: func(t *testing.T, s State) {
				if s.MaintenanceInfo != nil {
					t.Fatalf("info %+v while off", s.MaintenanceInfo)
				}
			}},
		{name: "maintenance by too long", raw: true, cmd: SetMaintenance{On: true, Time: t0, Reason: "r", By: strings.Repeat("x", MaxReasonLen+1)}, want: ErrInvalidCommand},

		// SetSettings
		{name: "settings set", cmd: SetSettings{Settings: json.RawMessage(`{ "vip" : "10.0.0.100/24" }`)},
			check: func(t *testing.T, s State) {
				if string(s.Settings) != `{"vip":"10.0.0.100/24"}` {
					t.Fatalf("settings %q", s.Settings)
				}
			}},
		{name: "settings cleared", setup: []Command{SetSettings{Settings: json.RawMessage(`{"a":1}`)}},
			cmd: SetSettings{Settings: json.RawMessage(`null`)},
			check: func(t *testing.T, s State) {
				if s.Settings != nil {
					t.Fatalf("settings %q, want nil", s.Settings)
				}
			}},
		{name: "settings not object", setup: []Command{SetSettings{Settings: json.RawMessage(`{"a":1}`)}},
			raw: true, cmd: SetSettings{Settings: json.RawMessage(`[1,2]`)}, want: ErrInvalidCommand},

		// CreateToken
		{name: "token created", cmd: CreateToken{Token: testToken("ab12cd", time.Hour)},
			check: func(t *testing.T, s State) {
				if tok := s.Tokens["ab12cd"]; tok != testToken("ab12cd", time.Hour) || len(s.Tokens) != 1 {
					t.Fatalf("tokens %#v", s.Tokens)
				}
			}},
		{name: "token exists", setup: []Command{CreateToken{Token: testToken("ab12cd", time.Hour)}},
			cmd: CreateToken{Token: testToken("ab12cd", 2*time.Hour)}, want: ErrTokenExists},
		{name: "token invalid", raw: true,
			cmd: CreateToken{Token: Token{ID: "ab12cd", SecretHash: "secret", CreatedAt: t0, Expires: at(time.Hour)}}, want: ErrInvalidCommand},

		// PruneTokens
		{name: "prune", setup: []Command{
			CreateToken{Token: testToken("aaaaaa", time.Hour)},
			CreateToken{Token: testToken("bbbbbb", 2*time.Hour)},
			CreateToken{Token: testToken("cccccc", 3*time.Hour)},
		}, cmd: PruneTokens{Now: at(2 * time.Hour)},
			check: func(t *testing.T, s State) {
				if _, ok := s.Tokens["cccccc"]; !ok || len(s.Tokens) != 1 {
					t.Fatalf("tokens %#v, want only cccccc (expiry at Now is expired)", s.Tokens)
				}
			}},
		{name: "prune nothing", setup: []Command{CreateToken{Token: testToken("aaaaaa", time.Hour)}},
			cmd: PruneTokens{Now: at(time.Hour - time.Nanosecond)},
			check: func(t *testing.T, s State) {
				if len(s.Tokens) != 1 {
					t.Fatalf("tokens %#v", s.Tokens)
				}
			}},
		{name: "prune zero now", raw: true, cmd: PruneTokens{}, want: ErrInvalidCommand},

		// RecordEvent
		{name: "event recorded", setup: members(),
			cmd: RecordEvent{Event: Event{Kind: "drill", Node: "gpu1", Detail: "planned drill", Time: at(time.Hour).In(time.FixedZone("X", 3600)), Index: 999}},
			check: func(t *testing.T, s State) {
				want := []Event{{Kind: "drill", Node: "gpu1", Detail: "planned drill", Time: at(time.Hour), Index: 4}}
				if !reflect.DeepEqual(s.Events, want) {
					t.Fatalf("events %#v, want %#v (index from the log, time in UTC)", s.Events, want)
				}
			}},
		{name: "event appended after others", setup: []Command{RecordEvent{Event: testEvent("drill", "", "first")}},
			cmd: RecordEvent{Event: testEvent("drill", "", "second")},
			check: func(t *testing.T, s State) {
				if len(s.Events) != 2 || s.Events[0].Detail != "first" || s.Events[1].Detail != "second" || s.Events[1].Index != 2 {
					t.Fatalf("events %#v", s.Events)
				}
			}},
		{name: "event about a removed node", setup: with(members(), RemoveMember{Name: "gpu2"}),
			cmd: RecordEvent{Event: testEvent("vip-conflict", "gpu2", "arp reply from gpu2's mac")},
			check: func(t *testing.T, s State) {
				if len(s.Events) != 1 || s.Events[0].Node != "gpu2" {
					t.Fatalf("events %#v", s.Events)
				}
			}},
		{name: "event bad kind", setup: members(), raw: true,
			cmd: RecordEvent{Event: testEvent("VIP", "gpu1", "d")}, want: ErrInvalidCommand},
		{name: "event bad node", setup: members(), raw: true,
			cmd: RecordEvent{Event: testEvent("drill", "gpu 1", "d")}, want: ErrInvalidCommand},
		{name: "event empty detail", setup: members(), raw: true,
			cmd: RecordEvent{Event: testEvent("drill", "gpu1", "")}, want: ErrInvalidCommand},
		{name: "event long detail", setup: members(), raw: true,
			cmd: RecordEvent{Event: testEvent("drill", "gpu1", strings.Repeat("x", MaxReasonLen+1))}, want: ErrInvalidCommand},
		{name: "event zero time", setup: members(), raw: true,
			cmd: RecordEvent{Event: Event{Kind: "drill", Detail: "d"}}, want: ErrInvalidCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(t)
			for i, c := range tt.setup {
				mustApply(t, f, uint64(i+1), c)
			}
			idx := uint64(len(tt.setup) + 1)
			data := rawEntry(t, tt.cmd)
			if !tt.raw {
				data = mustEncode(t, tt.cmd)
			}
			before := f.State()
			changed := f.Changed()
			res := applyData(t, f, idx, data)
			after := f.State()
			if after.LastIndex != idx {
				t.Fatalf("LastIndex %d, want %d", after.LastIndex, idx)
			}
			if tt.want != nil {
				if !errors.Is(res.Err, tt.want) {
					t.Fatalf("Result.Err = %v, want %v", res.Err, tt.want)
				}
				before.LastIndex = idx
				assertStateEqual(t, after, before)
				select {
				case <-changed:
					t.Fatal("Changed fired for a rejected command")
				default:
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("Result.Err = %v", res.Err)
			}
			select {
			case <-changed:
			default:
				t.Fatal("Changed did not fire for an accepted command")
			}
			tt.check(t, after)
		})
	}
}

func TestApply_Errors_Name_Field(t *testing.T) {
	f := newTestFSM(t)
	for i, c := range members() {
		mustApply(t, f, uint64(i+1), c)
	}
	mustApply(t, f, 4, SetActive{Node: "gpu1", Epoch: 5, Time: t0, Reason: "startup"})
	res := applyData(t, f, 5, mustEncode(t, SetActive{Node: "gpu2", Epoch: 3, Time: t0, Reason: "r"}))
	for _, want := range []string{"index 5", "SetActive", "epoch 3", "current epoch 5"} {
		if res.Err == nil || !strings.Contains(res.Err.Error(), want) {
			t.Fatalf("error %v does not mention %q", res.Err, want)
		}
	}
}

func TestApply_UnknownAndMalformed(t *testing.T) {
	valid := mustEncode(t, SetMaintenance{On: true, Time: t0, Reason: "r"})
	tests := []struct {
		name string
		data []byte
		want error // nil: skipped without error
	}{
		{"unknown type", append([]byte{99, 1}, "{}"...), ErrUnknownCommand},
		{"unknown type 0", []byte{0, 1}, ErrUnknownCommand},
		{"unknown type ignorable", append([]byte{byte(IgnoreUnknownFlag | 99), 1}, `{"whatever":true}`...), nil},
		{"unknown type ignorable, junk payload", []byte{0xff, 7, 0xde, 0xad}, nil},
		{"unknown type next to RecordEvent, ignorable", append([]byte{byte(IgnoreUnknownFlag | 9), 1}, `{"event":{}}`...), nil},
		{"RecordEvent unknown version, ignorable", append([]byte{byte(TypeRecordEvent), 2}, `{"event":{"kind":"x"}}`...), nil},
		{"RecordEvent without the flag", append([]byte{byte(TypeRecordEvent &^ IgnoreUnknownFlag), 1}, mustEncode(t, validCommands()[8])[2:]...), ErrUnknownCommand},
		{"RecordEvent invalid, not skipped", append([]byte{byte(TypeRecordEvent), 1}, `{"event":{"kind":"drill","detail":"d"}}`...), ErrInvalidCommand},
		{"RecordEvent malformed, not skipped", append([]byte{byte(TypeRecordEvent), 1}, `{"event":"drill"}`...), ErrMalformedCommand},
		{"unknown version", append([]byte{byte(TypeSetMaintenance), 2}, valid[2:]...), ErrUnknownCommand},
		{"empty", nil, ErrMalformedCommand},
		{"one byte ignorable", []byte{0x80}, ErrMalformedCommand},
		{"truncated", valid[:len(valid)/2], ErrMalformedCommand},
		{"garbage", []byte("\x04\x01garbage"), ErrMalformedCommand},
		{"trailing", append(append([]byte(nil), valid...), "xyz"...), ErrMalformedCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(t)
			for i, c := range members() {
				mustApply(t, f, uint64(i+1), c)
			}
			before := f.State()
			changed := f.Changed()
			res := applyData(t, f, 10, tt.data)
			if tt.want == nil && res.Err != nil || tt.want != nil && !errors.Is(res.Err, tt.want) {
				t.Fatalf("Result.Err = %v, want %v", res.Err, tt.want)
			}
			before.LastIndex = 10
			assertStateEqual(t, f.State(), before)
			select {
			case <-changed:
				t.Fatal("Changed fired")
			default:
			}
		})
	}
}

func TestApply_NonCommandEntry(t *testing.T) {
	f := newTestFSM(t)
	out := f.Apply(&raft.Log{Index: 3, Type: raft.LogNoop})
	if res := out.(Result); res.Err != nil || res.Index != 3 {
		t.Fatalf("Apply(noop) = %#v", res)
	}
	if got := f.State().LastIndex; got != 3 {
		t.Fatalf("LastIndex %d, want 3", got)
	}
	if res := f.Apply(nil).(Result); !errors.Is(res.Err, ErrMalformedCommand) {
		t.Fatalf("Apply(nil) = %#v", res)
	}
}

func TestApply_RecoversPanic(t *testing.T) {
	f := newTestFSM(t)
	f.handlers[TypeSetMaintenance] = func(*State, Command, uint64) error { panic("boom") }
	res := applyData(t, f, 1, mustEncode(t, SetMaintenance{On: true, Time: t0, Reason: "r"}))
	if !errors.Is(res.Err, ErrApplyPanic) || !strings.Contains(res.Err.Error(), "boom") {
		t.Fatalf("Result.Err = %v, want ErrApplyPanic naming the panic", res.Err)
	}
	// The lock was released and the FSM still works.
	mustApply(t, f, 2, UpsertMember{Member: gpuMember("gpu1", "10.0.0.1")})
	if s := f.State(); s.LastIndex != 2 || s.Maintenance {
		t.Fatalf("state after panic %#v", s)
	}
}

func TestNew_DuplicateRegistrationPanics(t *testing.T) {
	f := New(Config{})
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "registered twice") {
			t.Fatalf("recover() = %v, want a duplicate-registration panic", p)
		}
	}()
	f.register(TypeSetActive, applySetActive)
}

func TestRegistry_DecodeAndHandlersAgree(t *testing.T) {
	f := New(Config{})
	if len(f.handlers) != len(knownTypes()) {
		t.Fatalf("%d handlers, %d known types", len(f.handlers), len(knownTypes()))
	}
	for typ := 0; typ < 256; typ++ {
		known := false
		for ver := 0; ver < 256; ver++ {
			p := newPayload(Type(typ), uint8(ver))
			if p == nil {
				continue
			}
			known = true
			if p.Type() != Type(typ) || p.Version() != uint8(ver) {
				t.Errorf("newPayload(%d, %d) gives %T of type %d version %d", typ, ver, p, p.Type(), p.Version())
			}
		}
		_, handled := f.handlers[Type(typ)]
		if known != handled || known != knownType(Type(typ)) {
			t.Errorf("type %d: decodable %v, handled %v, listed %v", typ, known, handled, knownType(Type(typ)))
		}
	}
	for _, c := range validCommands() {
		if newPayload(c.Type(), c.Version()) == nil {
			t.Errorf("%T writes type %d version %d that Decode does not read", c, c.Type(), c.Version())
		}
	}
	if len(validCommands()) != len(knownTypes()) {
		t.Errorf("validCommands has %d entries for %d types", len(validCommands()), len(knownTypes()))
	}
}

func TestApply_HistoryBound(t *testing.T) {
	f := newTestFSM(t)
	for i, c := range members() {
		mustApply(t, f, uint64(i+1), c)
	}
	const n = HistoryLimit + 5
	base := uint64(len(members()))
	for i := 1; i <= n; i++ {
		node := "gpu1"
		if i%2 == 0 {
			node = "gpu2"
		}
		mustApply(t, f, base+uint64(i), SetActive{Node: node, Epoch: uint64(10 * i), Time: at(time.Duration(i) * time.Second), Reason: fmt.Sprintf("r%d", i)})
	}
	s := f.State()
	if len(s.History) != HistoryLimit {
		t.Fatalf("history has %d entries, want %d", len(s.History), HistoryLimit)
	}
	if first := s.History[0]; first.Epoch != 60 || first.Reason != "r6" {
		t.Fatalf("oldest kept transition %#v, want epoch 60 (the 5 oldest dropped)", first)
	}
	if last := s.History[HistoryLimit-1]; last.Epoch != 10*n || last.Index != base+n || last.To != s.Active.Node {
		t.Fatalf("newest transition %#v, active %#v", last, s.Active)
	}
	for i := 1; i < len(s.History); i++ {
		if s.History[i].Epoch <= s.History[i-1].Epoch {
			t.Fatalf("history[%d] epoch %d not after %d", i, s.History[i].Epoch, s.History[i-1].Epoch)
		}
		if s.History[i].From != s.History[i-1].To {
			t.Fatalf("history[%d] from %q, previous to %q", i, s.History[i].From, s.History[i-1].To)
		}
	}
	if err := validateState(&s); err != nil {
		t.Fatalf("state after many transitions breaks an invariant: %v", err)
	}
}

func TestApply_RecordEventIsAppliedNotSkipped(t *testing.T) {
	// TypeRecordEvent carries IgnoreUnknownFlag; this node knows it, so it
	// must apply it (the skip path is only for unknown pairs).
	f := newTestFSM(t)
	changed := f.Changed()
	e := testEvent("drill", "gpu1", "drill")
	res := applyData(t, f, 7, mustEncode(t, RecordEvent{Event: e}))
	if res.Err != nil {
		t.Fatalf("Result.Err = %v", res.Err)
	}
	e.Index = 7
	if s := f.State(); len(s.Events) != 1 || s.Events[0] != e {
		t.Fatalf("events %#v, want [%#v]", s.Events, e)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed did not fire for an applied RecordEvent")
	}
}

func TestApply_EventBound(t *testing.T) {
	f := newTestFSM(t)
	const n = EventLimit + 5
	for i := 1; i <= n; i++ {
		mustApply(t, f, uint64(i), RecordEvent{Event: Event{Kind: "drill", Detail: fmt.Sprintf("d%d", i), Time: at(time.Duration(i) * time.Second)}})
	}
	s := f.State()
	if len(s.Events) != EventLimit {
		t.Fatalf("events has %d entries, want %d", len(s.Events), EventLimit)
	}
	if first := s.Events[0]; first.Detail != "d6" || first.Index != 6 {
		t.Fatalf("oldest kept event %#v, want d6 at index 6 (the 5 oldest dropped)", first)
	}
	if last := s.Events[EventLimit-1]; last.Detail != fmt.Sprintf("d%d", n) || last.Index != n {
		t.Fatalf("newest event %#v", last)
	}
	for i := 1; i < len(s.Events); i++ {
		if s.Events[i].Index != s.Events[i-1].Index+1 {
			t.Fatalf("events[%d] index %d after %d", i, s.Events[i].Index, s.Events[i-1].Index)
		}
	}
	if err := validateState(&s); err != nil {
		t.Fatalf("state after many events breaks an invariant: %v", err)
	}
}

func TestChanged_Broadcast(t *testing.T) {
	f := newTestFSM(t)
	first := f.Changed()
	if f.Changed() != first {
		t.Fatal("Changed returned a new channel without a change")
	}
	// Several watchers wait on the same channel; one apply wakes them all.
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-first
		}()
	}
	mustApply(t, f, 1, UpsertMember{Member: gpuMember("gpu1", "10.0.0.1")})
	wg.Wait()
	second := f.Changed()
	if second == first {
		t.Fatal("channel not replaced after a change")
	}
	select {
	case <-second:
		t.Fatal("new channel already closed")
	default:
	}
	mustApply(t, f, 2, RemoveMember{Name: "gpu1"})
	select {
	case <-second:
	default:
		t.Fatal("second change did not close the new channel")
	}
}

func TestState_IsDeepCopy(t *testing.T) {
	f := newTestFSM(t)
	for i, c := range with(members(),
		SetActive{Node: "gpu1", Epoch: 1, Time: t0, Reason: "startup"},
		SetSettings{Settings: json.RawMessage(`{"a":1}`)},
		CreateToken{Token: testToken("ab12cd", time.Hour)},
		RecordEvent{Event: testEvent("drill", "gpu1", "drill")},
	) {
		mustApply(t, f, uint64(i+1), c)
	}
	want := f.State()
	got := f.State()
	got.Members["gpu9"] = gpuMember("gpu9", "10.0.0.9")
	delete(got.Members, "gpu1")
	got.Tokens["zzzzzz"] = Token{}
	got.History[0].To = "mutated"
	got.Events[0].Detail = "mutated"
	got.Settings[1] = 'X'
	assertStateEqual(t, f.State(), want)

	if m, ok := f.Member("gpu2"); !ok || !reflect.DeepEqual(m, gpuMember("gpu2", "10.0.0.2")) {
		t.Fatalf("Member(gpu2) = %#v, %v", m, ok)
	}
	if _, ok := f.Member("gpu9"); ok {
		t.Fatal("Member(gpu9) found")
	}
	if s := New(Config{}).State(); s.Members == nil || s.Tokens == nil {
		t.Fatal("empty state has nil maps")
	}
}

func TestApply_Deterministic(t *testing.T) {
	// Two replicas given the same entries, one of them proposed with a
	// non-UTC time, end in equal states and byte-equal snapshots.
	entries := [][]byte{}
	zone := time.FixedZone("EST", -5*3600)
	for _, c := range with(members(),
		SetActive{Node: "gpu1", Epoch: 1, Time: t0.In(zone), Reason: "startup"},
		CreateToken{Token: testToken("aaaaaa", time.Hour)},
		CreateToken{Token: testToken("bbbbbb", 3*time.Hour)},
		SetSettings{Settings: json.RawMessage(`{"b":2,"a":1}`)},
		PruneTokens{Now: at(2 * time.Hour)},
		RecordEvent{Event: Event{Kind: "vip-conflict", Node: "gpu9", Detail: "d", Time: at(time.Hour).In(zone)}},
		SetActive{Node: "gpu2", Epoch: 2, Time: at(time.Hour), Reason: "manual:failover"},
	) {
		entries = append(entries, mustEncode(t, c))
	}
	entries = append(entries, []byte("junk"))
	a, b := newTestFSM(t), newTestFSM(t)
	for i, e := range entries {
		ra, rb := applyData(t, a, uint64(i+1), e), applyData(t, b, uint64(i+1), e)
		if fmt.Sprint(ra.Err) != fmt.Sprint(rb.Err) {
			t.Fatalf("entry %d: results differ: %v / %v", i+1, ra.Err, rb.Err)
		}
	}
	assertStateEqual(t, a.State(), b.State())
	sa, err := marshalSnapshot(a.State())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := marshalSnapshot(b.State())
	if err != nil {
		t.Fatal(err)
	}
	if string(sa) != string(sb) {
		t.Fatalf("snapshots differ:\n%s\n%s", sa, sb)
	}
}

func TestConcurrentReaders(t *testing.T) {
	// Readers on other goroutines while Apply and Snapshot run: the race
	// detector checks the locking.
	f := newTestFSM(t)
	for i, c := range members() {
		mustApply(t, f, uint64(i+1), c)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-f.Changed():
				default:
				}
				s := f.State()
				_ = len(s.History)
				f.Member("gpu1")
			}
		}()
	}
	for i := 1; i <= 200; i++ {
		node := []string{"gpu1", "gpu2"}[i%2]
		mustApply(t, f, uint64(10+i), SetActive{Node: node, Epoch: uint64(i), Time: at(time.Duration(i)), Reason: "r"})
		if i%50 == 0 {
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			snap.Release()
		}
	}
	close(stop)
	wg.Wait()
}
