package fsm

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The golden corpus is data written by released versions. Its expected
// values below are frozen: never edit them or the v1 files. A new payload
// or snapshot version adds new files and new expectations next to these,
// and these must keep decoding. -update rewrites the files from the
// expectations (only for adding new ones).

var goldenTime = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

// goldenCommandsV1 maps a file name to the command its v1 encoding holds.
func goldenCommandsV1() map[string]Command {
	return map[string]Command{
		"01-upsert-member-v1.bin": UpsertMember{Member: Member{
			Name: "gpu-node-1", Role: RoleGPU, RaftAddr: "192.168.10.11:7000",
			APIAddr: "192.168.10.11:7001", GossipAddr: "192.168.10.11:7002", JoinedAt: goldenTime,
		}},
		"02-remove-member-v1.bin": RemoveMember{Name: "gpu-node-2"},
		"03-set-active-v1.bin": SetActive{Node: "gpu-node-1", Epoch: 42, Time: goldenTime.Add(time.Minute),
			Reason: "health:gpu-node-2:http"},
		"04-set-maintenance-v1.bin": SetMaintenance{On: true, Time: goldenTime.Add(2 * time.Minute),
			Reason: "manual:driver upgrade"},
		"05-set-settings-v1.bin": SetSettings{Settings: json.RawMessage(
			`{"vip":"192.168.10.100/24","iface":"eth0","service":{"image":"vllm/vllm-openai:v0.6.0","port":8000},"checks":{"interval":"1s","rise":2,"fall":3}}`)},
		"06-create-token-v1.bin": CreateToken{Token: Token{ID: "k3x9q2",
			SecretHash: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
			CreatedAt:  goldenTime, Expires: goldenTime.Add(24 * time.Hour)}},
		"07-prune-tokens-v1.bin": PruneTokens{Now: goldenTime.Add(48 * time.Hour)},
		"09-revoke-token-v1.bin": RevokeToken{ID: "k3x9q2", Time: goldenTime.Add(time.Hour), By: "root@gpu-node-1"},
		"01-upsert-member-token-v1.bin": UpsertMember{Member: Member{
			Name: "gpu-node-3", Role: RoleWitness, RaftAddr: "192.168.10.13:7000",
			APIAddr: "192.168.10.13:7001", GossipAddr: "192.168.10.13:7002", JoinedAt: goldenTime,
		}, TokenID: "k3x9q2"},
		"06-create-token-uses-v1.bin": CreateToken{Token: Token{ID: "m4y7r1",
			SecretHash: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
			CreatedAt:  goldenTime, Expires: goldenTime.Add(time.Hour), Role: RoleWitness, UsesAllowed: 3}},
		"08-record-event-v1.bin": RecordEvent{Event: Event{Kind: "vip-conflict", Node: "gpu-node-2",
			Detail: "arp: 192.168.10.100 is-at 02:42:c0:a8:0a:63, not a member's mac", Time: goldenTime.Add(3 * time.Minute)}},
	}
}

// goldenSnapshotV1 is the state in snapshot-v1.bin.
func goldenSnapshotV1() State {
	w := Member{Name: "witness", Role: RoleWitness, RaftAddr: "[fd00:10::3]:7000", APIAddr: "[fd00:10::3]:7001", JoinedAt: goldenTime}
	g1 := goldenCommandsV1()["01-upsert-member-v1.bin"].(UpsertMember).Member
	g2 := Member{Name: "gpu-node-2", Role: RoleGPU, RaftAddr: "192.168.10.12:7000", APIAddr: "192.168.10.12:7001",
		GossipAddr: "192.168.10.12:7002", JoinedAt: goldenTime.Add(time.Second)}
	return State{
		Members: map[string]Member{g1.Name: g1, g2.Name: g2, w.Name: w},
		Active: Assignment{Node: "gpu-node-2", Epoch: 2, Since: goldenTime.Add(time.Hour),
			Reason: "health:gpu-node-1:gpu"},
		Maintenance: true,
		Settings:    goldenCommandsV1()["05-set-settings-v1.bin"].(SetSettings).Settings,
		Tokens: map[string]Token{
			"k3x9q2": goldenCommandsV1()["06-create-token-v1.bin"].(CreateToken).Token,
		},
		History: []Transition{
			{Epoch: 1, From: "", To: "gpu-node-1", Reason: "startup", Time: goldenTime.Add(time.Minute), Index: 5},
			{Epoch: 2, From: "gpu-node-1", To: "gpu-node-2", Reason: "health:gpu-node-1:gpu", Time: goldenTime.Add(time.Hour), Index: 9},
		},
		LastIndex: 12,
	}
}

// goldenSnapshotEventsV1 is the state in snapshot-events-v1.bin: the
// state of snapshot-v1.bin plus events (added with RecordEvent), one of
// them about a node that is not a member.
func goldenSnapshotEventsV1() State {
	s := goldenSnapshotV1()
	s.Events = []Event{
		{Kind: "drill", Node: "gpu-node-1", Detail: "planned failover drill", Time: goldenTime.Add(30 * time.Minute), Index: 7},
		{Kind: "vip-conflict", Node: "gpu-node-9", Detail: "arp: 192.168.10.100 is-at 02:42:c0:a8:0a:63",
			Time: goldenTime.Add(2 * time.Hour), Index: 11},
		{Kind: "note", Detail: "cluster-wide note <&>", Time: goldenTime.Add(3 * time.Hour), Index: 12},
	}
	return s
}

func goldenPath(name string) string { return filepath.Join("testdata", "golden", name) }

func TestGolden_CommandsV1(t *testing.T) {
	for name, want := range goldenCommandsV1() {
		t.Run(name, func(t *testing.T) {
			if *update {
				writeGolden(t, name, mustEncode(t, want))
			}
			data, err := os.ReadFile(goldenPath(name))
			if err != nil {
				t.Fatalf("read golden file: %v", err)
			}
			if data[0] != byte(want.Type()) || data[1] != 1 {
				t.Fatalf("header %d/%d, want type %d version 1", data[0], data[1], want.Type())
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %#v\nwant    %#v", got, want)
			}
		})
	}
}

func TestGolden_SnapshotV1(t *testing.T) {
	testGoldenSnapshot(t, "snapshot-v1.bin", goldenSnapshotV1())
}

func TestGolden_SnapshotEventsV1(t *testing.T) {
	testGoldenSnapshot(t, "snapshot-events-v1.bin", goldenSnapshotEventsV1())
}

// testGoldenSnapshot restores the golden snapshot file name and compares
// the state with want; -update rewrites the file from want first.
func testGoldenSnapshot(t *testing.T, name string, want State) {
	if *update {
		data, err := marshalSnapshot(want)
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, name, data)
	}
	data, err := os.ReadFile(goldenPath(name))
	if err != nil {
		t.Fatalf("read golden file: %v", err)
	}
	if !bytes.HasPrefix(data, []byte("NBHASNAP\x01")) {
		t.Fatalf("golden snapshot header %q", data[:min(9, len(data))])
	}
	f := newTestFSM(t)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	assertStateEqual(t, f.State(), want)
}

func writeGolden(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(goldenPath(name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goldenPath(name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
