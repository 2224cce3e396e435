package fsm

import (
	"encoding/json"
	"flag"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// update regenerates the golden files and the committed fuzz seed corpus:
//
//	go test ./fsm -run 'TestGolden|TestWriteFuzzCorpus' -update
var update = flag.Bool("update", false, "rewrite fsm/testdata golden files and fuzz seed corpus")

// t0 is the fixed time the fixtures use; tests never read the clock.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func gpuMember(name, ip string) Member {
	return Member{
		Name:       name,
		Role:       RoleGPU,
		RaftAddr:   ip + ":7000",
		APIAddr:    ip + ":7001",
		GossipAddr: ip + ":7002",
		JoinedAt:   t0,
	}
}

func witnessMember() Member {
	return Member{
		Name:     "witness",
		Role:     RoleWitness,
		RaftAddr: "[fd00::3]:7000",
		APIAddr:  "[fd00::3]:7001",
		JoinedAt: t0,
	}
}

const testHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func testToken(id string, expires time.Duration) Token {
	return Token{ID: id, SecretHash: testHash, CreatedAt: t0, Expires: at(expires)}
}

// validCommands holds one valid command of every type, in type order; the
// fuzz seeds and golden files are built from it.
func validCommands() []Command {
	return []Command{
		UpsertMember{Member: gpuMember("gpu1", "10.0.0.1")},
		RemoveMember{Name: "gpu2"},
		SetActive{Node: "gpu1", Epoch: 7, Time: at(time.Minute), Reason: "health:gpu2:http"},
		SetMaintenance{On: true, Time: at(2 * time.Minute), Reason: "manual:upgrade <driver> & reboot"},
		SetSettings{Settings: json.RawMessage(`{"vip":"10.0.0.100/24","service":{"image":"vllm:latest"},"checks":[1,2.5,null,true]}`)},
		CreateToken{Token: testToken("ab12cd", time.Hour)},
		PruneTokens{Now: at(2 * time.Hour)},
		RevokeToken{ID: "ab12cd", Time: at(30 * time.Minute), By: "root@gpu1"},
		RecordEvent{Event: testEvent("vip-conflict", "gpu2", "arp: 10.0.0.100 answered by 02:42:ac:11:00:09 <not us> & not a member")},
	}
}

// testEvent returns a valid event at t0+3m with Index 0.
func testEvent(kind, node, detail string) Event {
	return Event{Kind: kind, Node: node, Detail: detail, Time: at(3 * time.Minute)}
}

// newTestFSM returns an FSM that logs to t.
func newTestFSM(t testing.TB) *FSM {
	t.Helper()
	return New(Config{Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
}

// testWriter routes log lines to t.Log, so they show only on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// mustEncode encodes c or fails the test.
func mustEncode(t testing.TB, c Command) []byte {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatalf("Encode(%#v): %v", c, err)
	}
	return b
}

// rawEntry frames c without validating it, as a buggy or hostile proposer
// could.
func rawEntry(t testing.TB, c Command) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal %#v: %v", c, err)
	}
	return append([]byte{byte(c.Type()), c.Version()}, b...)
}

// applyData applies data as a command entry at index idx.
func applyData(t testing.TB, f *FSM, idx uint64, data []byte) Result {
	t.Helper()
	out := f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data})
	res, ok := out.(Result)
	if !ok {
		t.Fatalf("Apply returned %T, want fsm.Result", out)
	}
	if res.Index != idx {
		t.Fatalf("Result.Index = %d, want %d", res.Index, idx)
	}
	return res
}

// mustApply encodes and applies c at idx and fails the test on any error.
func mustApply(t testing.TB, f *FSM, idx uint64, c Command) {
	t.Helper()
	if res := applyData(t, f, idx, mustEncode(t, c)); res.Err != nil {
		t.Fatalf("apply %T at %d: %v", c, idx, res.Err)
	}
}

// assertStateEqual fails if got and want differ.
func assertStateEqual(t testing.TB, got, want State) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", "  ")
		wj, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("state differs\n got: %s\nwant: %s", gj, wj)
	}
}
