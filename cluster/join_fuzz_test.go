package cluster

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/newbieha/newbieha/cluster/pki"
)

// FuzzJoinRequest feeds the join endpoint's decoding and checks (body,
// fields, public key, token syntax) arbitrary bytes: nothing panics, and a
// body that passes decodes to a request that encodes and decodes again to
// the same value.
func FuzzJoinRequest(f *testing.F) {
	key, err := pki.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	pub, err := pki.EncodePublicKey(&key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := pki.NewToken(string(bytes.Repeat([]byte("ab"), 32)))
	good, _ := json.Marshal(JoinRequest{Token: tok.String(), Name: "node2", Role: "gpu", Advertise: "10.0.0.2",
		Ports: Ports{API: 7700, Raft: 7701, Gossip: 7702}, PublicKey: string(pub)})
	for _, s := range [][]byte{good, []byte(""), []byte("null"), []byte("{}"), []byte(`{"name":"x"} {}`),
		[]byte(`{"ports":{"api":-1}}`), []byte(`{"advertise":"fe80::1%eth0"}`), append(good, 'x')} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req JoinRequest
		if err := decodeBody(bytes.NewReader(b), &req); err != nil {
			return
		}
		_, verr := validateJoin(req)
		_, _ = pki.ParsePublicKey([]byte(req.PublicKey))
		_, _ = pki.ParseToken(req.Token)
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var req2 JoinRequest
		if err := decodeBody(bytes.NewReader(again), &req2); err != nil {
			t.Fatalf("re-decode %s: %v", again, err)
		}
		if req2 != req {
			t.Fatalf("round trip: %+v != %+v", req2, req)
		}
		if _, verr2 := validateJoin(req2); (verr == nil) != (verr2 == nil) {
			t.Fatalf("validation differs after round trip: %v vs %v", verr, verr2)
		}
	})
}
