package fsm

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkApply measures one SetActive entry end to end (decode,
// validate, apply, history bookkeeping) in the steady state: history full.
// Entries are encoded outside the timer, a chunk at a time, since each
// needs a new epoch.
func BenchmarkApply(b *testing.B) {
	f := New(Config{})
	for i, c := range members() {
		mustApply(b, f, uint64(i+1), c)
	}
	const chunk = 4096
	var (
		epoch   uint64
		idx     = uint64(len(members()))
		entries = make([][]byte, chunk)
		pos     = chunk
	)
	refill := func() {
		for j := range entries {
			epoch++
			node := "gpu1"
			if epoch%2 == 0 {
				node = "gpu2"
			}
			entries[j] = mustEncode(b, SetActive{Node: node, Epoch: epoch, Time: at(time.Duration(epoch) * time.Second), Reason: "health:gpu1:http"})
		}
		pos = 0
	}
	apply := func() {
		if pos == len(entries) {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		idx++
		res := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: entries[pos]}).(Result)
		pos++
		if res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	for i := 0; i < HistoryLimit; i++ {
		apply()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		apply()
	}
}

// BenchmarkSnapshotPersist measures Snapshot plus Persist of a state with a
// full history.
func BenchmarkSnapshotPersist(b *testing.B) {
	f := New(Config{})
	for i, c := range members() {
		mustApply(b, f, uint64(i+1), c)
	}
	for i := 1; i <= HistoryLimit; i++ {
		mustApply(b, f, uint64(10+i), SetActive{Node: "gpu1", Epoch: uint64(i), Time: at(time.Duration(i)), Reason: "health:gpu2:http"})
	}
	sink := &memSink{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sink.buf.Reset()
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(sink); err != nil {
			b.Fatal(err)
		}
		snap.Release()
	}
	b.SetBytes(int64(sink.buf.Len()))
}
