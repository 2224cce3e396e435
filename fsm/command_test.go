package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	member := func(mod func(*Member)) Command {
		m := gpuMember("gpu1", "10.0.0.1")
		mod(&m)
		return UpsertMember{Member: m}
	}
	active := func(mod func(*SetActive)) Command {
		c := SetActive{Node: "gpu1", Epoch: 1, Time: t0, Reason: "startup"}
		mod(&c)
		return c
	}
	event := func(mod func(*Event)) Command {
		e := testEvent("drill", "gpu1", "planned failover drill")
		mod(&e)
		return RecordEvent{Event: e}
	}
	token := func(mod func(*Token)) Command {
		tok := testToken("ab12cd", time.Hour)
		mod(&tok)
		return CreateToken{Token: tok}
	}
	tests := []struct {
		name string
		cmd  Command
		want string // substring of the error; "" means valid
	}{
		{"member ok", member(func(*Member) {}), ""},
		{"member 63-char name", member(func(m *Member) { m.Name = strings.Repeat("a", 63) }), ""},
		{"member digits and dash", member(func(m *Member) { m.Name = "0-gpu-1" }), ""},
		{"member ipv6, no gossip", UpsertMember{Member: witnessMember()}, ""},
		{"member zero joined_at", member(func(m *Member) { m.JoinedAt = time.Time{} }), ""},
		{"member empty name", member(func(m *Member) { m.Name = "" }), `member name ""`},
		{"member 64-char name", member(func(m *Member) { m.Name = strings.Repeat("a", 64) }), "member name"},
		{"member upper case", member(func(m *Member) { m.Name = "Gpu1" }), `member name "Gpu1"`},
		{"member leading dash", member(func(m *Member) { m.Name = "-gpu" }), `member name "-gpu"`},
		{"member underscore", member(func(m *Member) { m.Name = "gpu_1" }), `member name "gpu_1"`},
		{"member role", member(func(m *Member) { m.Role = "cpu" }), `role "cpu"`},
		{"member empty role", member(func(m *Member) { m.Role = "" }), `role ""`},
		{"raft addr no port", member(func(m *Member) { m.RaftAddr = "10.0.0.1" }), `raft_addr "10.0.0.1": want ip:port`},
		{"raft addr hostname", member(func(m *Member) { m.RaftAddr = "gpu1.lan:7000" }), `host "gpu1.lan" is not an ip address`},
		{"raft addr port 0", member(func(m *Member) { m.RaftAddr = "10.0.0.1:0" }), `port "0" not in 1..65535`},
		{"raft addr port 65536", member(func(m *Member) { m.RaftAddr = "10.0.0.1:65536" }), `port "65536"`},
		{"raft addr port name", member(func(m *Member) { m.RaftAddr = "10.0.0.1:http" }), `port "http"`},
		{"raft addr unspecified", member(func(m *Member) { m.RaftAddr = "0.0.0.0:7000" }), "unspecified"},
		{"raft addr zone", member(func(m *Member) { m.RaftAddr = "[fe80::1%eth0]:7000" }), "zoned"},
		{"api addr empty", member(func(m *Member) { m.APIAddr = "" }), `api_addr ""`},
		{"gossip addr bad", member(func(m *Member) { m.GossipAddr = "10.0.0.1:" }), `gossip_addr "10.0.0.1:"`},
		{"joined_at year 10000", member(func(m *Member) { m.JoinedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), "joined_at"},

		{"remove ok", RemoveMember{Name: "gpu2"}, ""},
		{"remove bad name", RemoveMember{Name: "GPU2"}, `name "GPU2"`},

		{"active ok", active(func(*SetActive) {}), ""},
		{"active nobody", active(func(c *SetActive) { c.Node = "" }), ""},
		{"active bad node", active(func(c *SetActive) { c.Node = "node 1" }), `node "node 1"`},
		{"active epoch 0", active(func(c *SetActive) { c.Epoch = 0 }), "epoch 0"},
		{"active zero time", active(func(c *SetActive) { c.Time = time.Time{} }), "time: must be set"},
		{"active empty reason", active(func(c *SetActive) { c.Reason = "" }), "reason: must not be empty"},
		{"active long reason", active(func(c *SetActive) { c.Reason = strings.Repeat("x", MaxReasonLen+1) }), "reason: 1025 bytes"},
		{"active bad utf-8", active(func(c *SetActive) { c.Reason = "bad \xff" }), "not valid utf-8"},
		{"active time out of range", active(func(c *SetActive) {
			c.Time = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -5*3600))
		}), "year 10000 out of range"},

		{"maintenance ok", SetMaintenance{On: true, Time: t0, Reason: "manual"}, ""},
		{"maintenance off ok", SetMaintenance{Time: t0, Reason: "manual"}, ""},
		{"maintenance zero time", SetMaintenance{On: true, Reason: "manual"}, "time: must be set"},
		{"maintenance empty reason", SetMaintenance{On: true, Time: t0}, "reason: must not be empty"},
		{"maintenance by ok", SetMaintenance{On: true, Time: t0, Reason: "manual", By: "alice"}, ""},
		{"maintenance by too long", SetMaintenance{On: true, Time: t0, Reason: "manual", By: strings.Repeat("x", MaxReasonLen+1)}, "by: 1025 bytes"},

		{"settings object", SetSettings{Settings: json.RawMessage(` { "a" : 1 } `)}, ""},
		{"settings nil", SetSettings{}, ""},
		{"settings null", SetSettings{Settings: json.RawMessage("null")}, ""},
		{"settings array", SetSettings{Settings: json.RawMessage("[1]")}, "want a JSON object or null"},
		{"settings string", SetSettings{Settings: json.RawMessage(`"x"`)}, `settings "\"x\""`},
		{"settings broken", SetSettings{Settings: json.RawMessage(`{"a":`)}, "want a JSON object"},
		{"settings trailing", SetSettings{Settings: json.RawMessage(`{} x`)}, "want a JSON object"},
		{"settings too large", SetSettings{Settings: json.RawMessage(`{"a":"` + strings.Repeat("x", MaxSettingsLen) + `"}`)}, "at most 1048576"},

		{"token ok", token(func(*Token) {}), ""},
		{"token id upper", token(func(tok *Token) { tok.ID = "AB12CD" }), `token id "AB12CD"`},
		{"token id short", token(func(tok *Token) { tok.ID = "ab12c" }), `token id "ab12c"`},
		{"token id dash", token(func(tok *Token) { tok.ID = "ab-12c" }), `token id "ab-12c"`},
		{"token hash short", token(func(tok *Token) { tok.SecretHash = "abc" }), `secret_hash "abc"`},
		{"token hash upper", token(func(tok *Token) { tok.SecretHash = strings.ToUpper(testHash) }), "secret_hash"},
		{"token hash not hex", token(func(tok *Token) { tok.SecretHash = strings.Repeat("g", 64) }), "secret_hash"},
		{"token created zero", token(func(tok *Token) { tok.CreatedAt = time.Time{} }), "created_at: must be set"},
		{"token expires equal", token(func(tok *Token) { tok.Expires = tok.CreatedAt }), "is not after created_at"},
		{"token expires before", token(func(tok *Token) { tok.Expires = tok.CreatedAt.Add(-time.Second) }), "is not after created_at"},

		{"prune ok", PruneTokens{Now: t0}, ""},
		{"prune zero", PruneTokens{}, "now: must be set"},

		{"event ok", event(func(*Event) {}), ""},
		{"event no node", event(func(e *Event) { e.Node = "" }), ""},
		{"event 32-char kind", event(func(e *Event) { e.Kind = "a" + strings.Repeat("-", 30) + "9" }), ""},
		{"event index ignored", event(func(e *Event) { e.Index = 77 }), ""},
		{"event detail at limit", event(func(e *Event) { e.Detail = strings.Repeat("x", MaxReasonLen) }), ""},
		{"event empty kind", event(func(e *Event) { e.Kind = "" }), `event kind ""`},
		{"event 33-char kind", event(func(e *Event) { e.Kind = strings.Repeat("a", 33) }), `event kind "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"`},
		{"event kind leading digit", event(func(e *Event) { e.Kind = "1drill" }), `event kind "1drill"`},
		{"event kind leading dash", event(func(e *Event) { e.Kind = "-drill" }), `event kind "-drill"`},
		{"event kind upper", event(func(e *Event) { e.Kind = "Drill" }), `event kind "Drill"`},
		{"event kind underscore", event(func(e *Event) { e.Kind = "vip_conflict" }), `event kind "vip_conflict"`},
		{"event bad node", event(func(e *Event) { e.Node = "GPU1" }), `event drill: node "GPU1"`},
		{"event empty detail", event(func(e *Event) { e.Detail = "" }), "event drill: detail: must not be empty"},
		{"event long detail", event(func(e *Event) { e.Detail = strings.Repeat("x", MaxReasonLen+1) }), "event drill: detail: 1025 bytes"},
		{"event detail bad utf-8", event(func(e *Event) { e.Detail = "bad \xff" }), "not valid utf-8"},
		{"event zero time", event(func(e *Event) { e.Time = time.Time{} }), "event drill: time: must be set"},
		{"event time out of range", event(func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), "event drill: time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("Validate error %v, want ErrInvalidCommand", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate error %q does not contain %q", err, tt.want)
			}
			// Encode refuses it, and Decode rejects the raw entry the same way.
			if _, err := Encode(tt.cmd); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("Encode error %v, want ErrInvalidCommand", err)
			}
			// Decode rejects the entry a proposer that skipped Validate
			// would write, where JSON can carry it: encoding/json cannot
			// write out-of-range years or broken raw JSON, and turns bad
			// UTF-8 into U+FFFD.
			body, err := json.Marshal(tt.cmd)
			if err != nil || strings.Contains(tt.name, "utf-8") {
				return
			}
			raw := append([]byte{byte(tt.cmd.Type()), tt.cmd.Version()}, body...)
			if _, err := Decode(raw); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("Decode of the raw entry: error %v, want ErrInvalidCommand", err)
			}
		})
	}
}

func TestEncodeDecode_RoundTrip(t *testing.T) {
	for _, c := range validCommands() {
		t.Run(c.Type().String(), func(t *testing.T) {
			b := mustEncode(t, c)
			if Type(b[0]) != c.Type() || b[1] != c.Version() {
				t.Fatalf("header %d/%d, want %d/%d", b[0], b[1], c.Type(), c.Version())
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, normalize(c)) {
				t.Fatalf("Decode = %#v, want %#v", got, c)
			}
			// Pointers encode the same bytes as values.
			p := reflect.New(reflect.TypeOf(c))
			p.Elem().Set(reflect.ValueOf(c))
			pb := mustEncode(t, p.Interface().(Command))
			if !bytes.Equal(pb, b) {
				t.Fatalf("pointer encoding %q differs from value encoding %q", pb, b)
			}
		})
	}
}

func TestEncode_Canonical(t *testing.T) {
	zone := time.FixedZone("CET", 3600)
	a := mustEncode(t, SetActive{Node: "gpu1", Epoch: 1, Time: t0, Reason: "r"})
	b := mustEncode(t, SetActive{Node: "gpu1", Epoch: 1, Time: t0.In(zone), Reason: "r"})
	if !bytes.Equal(a, b) {
		t.Fatalf("same instant in another zone encodes differently:\n%q\n%q", a, b)
	}
	s := mustEncode(t, SetSettings{Settings: json.RawMessage("{ \"html\" : \"<a&b>\" ,\n \"n\": 1 }")})
	if want := `{"settings":{"html":"<a&b>","n":1}}`; string(s[2:]) != want {
		t.Fatalf("settings payload %q, want %q", s[2:], want)
	}
	n := mustEncode(t, SetSettings{Settings: json.RawMessage(" null ")})
	if want := `{"settings":null}`; string(n[2:]) != want {
		t.Fatalf("null settings payload %q, want %q", n[2:], want)
	}
}

// foreign implements Command but is not one of the package's types.
type foreign struct{}

func (foreign) Type() Type      { return TypeSetActive }
func (foreign) Version() uint8  { return 1 }
func (foreign) Validate() error { return nil }

func TestEncode_Rejects(t *testing.T) {
	var nilActive *SetActive
	for name, c := range map[string]Command{
		"nil":         nil,
		"nil pointer": nilActive,
		"foreign":     foreign{},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Encode(c); !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("Encode error %v, want ErrUnknownCommand", err)
			}
		})
	}
}

func TestDecode_Errors(t *testing.T) {
	valid := mustEncode(t, SetActive{Node: "gpu1", Epoch: 1, Time: t0, Reason: "r"})
	payload := func(typ Type, ver uint8, p string) []byte { return append([]byte{byte(typ), ver}, p...) }
	tests := []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"nil", nil, ErrMalformedCommand, "entry of 0 bytes"},
		{"one byte", []byte{byte(TypeSetActive)}, ErrMalformedCommand, "entry of 1 bytes"},
		{"type 0", payload(0, 1, "{}"), ErrUnknownCommand, "type 0"},
		{"type 99", payload(99, 1, "{}"), ErrUnknownCommand, "type 99"},
		{"type 99 ignorable", payload(IgnoreUnknownFlag|99, 1, "{}"), ErrUnknownCommand, "type 227"},
		{"known type with flag", payload(IgnoreUnknownFlag|TypeSetActive, 1, string(valid[2:])), ErrUnknownCommand, "type 131"},
		{"record event without flag", payload(TypeRecordEvent&^IgnoreUnknownFlag, 1, `{"event":{}}`), ErrUnknownCommand, "type 8"},
		{"record event version 2", payload(TypeRecordEvent, 2, `{"event":{}}`), ErrUnknownCommand, "RecordEvent: version 2"},
		{"record event no event", payload(TypeRecordEvent, 1, `{}`), ErrInvalidCommand, `event kind ""`},
		{"record event as array", payload(TypeRecordEvent, 1, `{"event":[]}`), ErrMalformedCommand, "event"},
		{"version 0", payload(TypeSetActive, 0, string(valid[2:])), ErrUnknownCommand, "SetActive: version 0"},
		{"version 2", payload(TypeSetActive, 2, string(valid[2:])), ErrUnknownCommand, "version 2"},
		{"empty payload", payload(TypeSetActive, 1, ""), ErrMalformedCommand, "empty payload"},
		{"blank payload", payload(TypeSetActive, 1, " \n"), ErrMalformedCommand, "empty payload"},
		{"null payload", payload(TypeSetActive, 1, "null"), ErrMalformedCommand, "want a JSON object"},
		{"array payload", payload(TypeSetActive, 1, "[]"), ErrMalformedCommand, "want a JSON object"},
		{"string payload", payload(TypeSetActive, 1, `"x"`), ErrMalformedCommand, "want a JSON object"},
		{"truncated", valid[:len(valid)-3], ErrMalformedCommand, "unexpected EOF"},
		{"trailing garbage", append(bytes.Clone(valid), 'x'), ErrMalformedCommand, "trailing data"},
		{"second object", append(bytes.Clone(valid), "{}"...), ErrMalformedCommand, "trailing data"},
		{"epoch as string", payload(TypeSetActive, 1, `{"node":"gpu1","epoch":"1","time":"2025-01-01T00:00:00Z","reason":"r"}`), ErrMalformedCommand, "epoch"},
		{"negative epoch", payload(TypeSetActive, 1, `{"epoch":-1}`), ErrMalformedCommand, "epoch"},
		{"fractional epoch", payload(TypeSetActive, 1, `{"epoch":1.5}`), ErrMalformedCommand, "epoch"},
		{"epoch overflow", payload(TypeSetActive, 1, `{"epoch":18446744073709551616}`), ErrMalformedCommand, "epoch"},
		{"bad time", payload(TypeSetActive, 1, `{"node":"gpu1","epoch":1,"time":"yesterday","reason":"r"}`), ErrMalformedCommand, "yesterday"},
		{"member as array", payload(TypeUpsertMember, 1, `{"member":[]}`), ErrMalformedCommand, "member"},
		{"garbage bytes", []byte{0x03, 0x01, 0xff, 0xfe, 0x00}, ErrMalformedCommand, ""},
		{"empty object", payload(TypeSetActive, 1, `{}`), ErrInvalidCommand, "epoch 0"},
		{"rule broken", payload(TypeRemoveMember, 1, `{"name":"Bad Name"}`), ErrInvalidCommand, `name "Bad Name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decode(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%q) = %#v, %v; want error %v", tt.data, c, err, tt.want)
			}
			if c != nil {
				t.Fatalf("Decode returned a command with an error: %#v", c)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestDecode_Lenient(t *testing.T) {
	// Unknown fields are ignored (a newer node may add optional ones),
	// white space around the object is fine, offsets become UTC and the
	// settings are compacted.
	got, err := Decode(append([]byte{byte(TypeSetActive), 1},
		" {\"node\":\"gpu1\",\"epoch\":3,\"time\":\"2025-03-14T10:26:53+01:00\",\"reason\":\"r\",\"future\":{\"x\":[1]}} \n"...))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := SetActive{Node: "gpu1", Epoch: 3, Time: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC), Reason: "r"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode = %#v, want %#v", got, want)
	}

	got, err = Decode(append([]byte{byte(TypeSetSettings), 1}, "{\"settings\": { \"a\" : [ 1 , 2 ] } }"...))
	if err != nil {
		t.Fatalf("Decode settings: %v", err)
	}
	if s := string(got.(SetSettings).Settings); s != `{"a":[1,2]}` {
		t.Fatalf("settings %q, want compacted", s)
	}
	got, err = Decode(append([]byte{byte(TypeSetSettings), 1}, `{"settings":null}`...))
	if err != nil {
		t.Fatalf("Decode null settings: %v", err)
	}
	if s := got.(SetSettings).Settings; s != nil {
		t.Fatalf("null settings decoded to %q, want nil", s)
	}
}

func TestType_String(t *testing.T) {
	for typ, want := range map[Type]string{
		TypeUpsertMember:                     "UpsertMember",
		TypePruneTokens:                      "PruneTokens",
		0:                                    "unknown(0)",
		42:                                   "unknown(42)",
		IgnoreUnknownFlag | TypeSetActive:    "unknown(131)",
		TypeRecordEvent:                      "RecordEvent",
		TypeRecordEvent &^ IgnoreUnknownFlag: "unknown(8)",
		IgnoreUnknownFlag | 9:                "unknown(137)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", uint8(typ), got, want)
		}
	}
}

func TestRole(t *testing.T) {
	if !RoleGPU.Valid() || !RoleWitness.Valid() || Role("cpu").Valid() || Role("").Valid() {
		t.Fatal("Role.Valid wrong")
	}
	if RoleGPU.String() != "gpu" {
		t.Fatalf("RoleGPU.String() = %q", RoleGPU.String())
	}
}
