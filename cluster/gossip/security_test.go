package gossip

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"
)

// These tests are named after the gossip attack of issue 9: a node that
// holds the gossip key (the witness, or a stolen disk) published
// origin=node1, seq=2^64-1, healthy=false, and every node believed it.

// forge builds a state for origin signed by signer.
func forge(t *testing.T, signer testIdentity, origin string, seq uint64, payload []byte) []byte {
	t.Helper()
	var e encoder
	inner, err := e.encodeState(stateMsg{Origin: origin, Seq: seq, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return signAs(t, signer, inner)
}

func TestGossip_WitnessCannotPublishAStateForNode1(t *testing.T) {
	nodes, logs := newCluster(t, 3, nil) // node3 plays the witness
	node1, node2, witness := nodes[0], nodes[1], nodes[2]
	if err := node1.SetLocalState([]byte(`{"healthy":true}`)); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"node1": []byte(`{"healthy":true}`)}
	waitFor(t, 5*time.Second, func() error { return seesState(nodes, want) })
	own, _ := member(node1, "node1")

	lie := []byte(`{"healthy":false}`)
	otherCA := func() testIdentity { // a CA the cluster does not trust, CN=node1
		key, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "evil CA"}, IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, _ := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
		ca, _ := x509.ParseCertificate(der)
		return theTestPKI.issue("node1", key, ca)
	}()
	witnessID := theTestPKI.identity("node3")
	node1ID := theTestPKI.identity("node1")
	stolenCert := testIdentity{key: witnessID.key, cert: node1ID.cert} // node1's certificate, the witness's key
	forgeries := map[string][]byte{
		"signed by the witness":        forge(t, witnessID, "node1", math.MaxUint64, lie),
		"node1's certificate attached": forge(t, stolenCert, "node1", own.Version+1, lie),
		"certificate of another CA":    forge(t, otherCA, "node1", own.Version+1, lie),
		"unsigned (the old format)": func() []byte {
			var e encoder
			b, _ := e.encodeState(stateMsg{Origin: "node1", Seq: own.Version + 1, Payload: lie})
			return b
		}(),
		"compact, signed by the witness": func() []byte {
			full := forge(t, witnessID, "node1", own.Version+1, lie)
			env, _ := decodeEnvelope(full)
			h := certHash(node1ID.cert)
			return encodeEnvelope(formCompact, h[:], env.sig, env.inner)
		}(),
	}
	for name, msg := range forgeries {
		// Over the network, as the witness would send it, and straight
		// into every node's delegate.
		if err := witness.ml.SendReliable(node2.ml.LocalNode(), msg); err != nil {
			t.Fatalf("%s: send: %v", name, err)
		}
		for _, g := range nodes {
			delegate{g}.NotifyMsg(msg)
			delegate{g}.MergeRemoteState(encodeBundle([][]byte{msg}), false)
		}
	}
	time.Sleep(200 * time.Millisecond) // the TCP sends above are in flight; nothing may change
	if err := seesState(nodes, want); err != nil {
		t.Fatalf("a forged state was taken: %v", err)
	}
	if now, _ := member(node1, "node1"); now.Version != own.Version {
		t.Fatalf("node1's own sequence moved from %d to %d", own.Version, now.Version)
	}
	for i, l := range logs {
		if n := strings.Count(l.String(), "dropping gossip state not signed by its origin"); n < len(forgeries)-1 {
			t.Errorf("node%d logged %d forged drops for %d forgeries", i+1, n, len(forgeries))
		}
	}
	// node1 can still change its own state (the test could fail).
	if err := node1.SetLocalState([]byte(`{"healthy":"still"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		return seesState(nodes, map[string][]byte{"node1": []byte(`{"healthy":"still"}`)})
	})
}

func TestGossip_SequenceNearMaxIsDroppedAndOwnSequenceNeverWraps(t *testing.T) {
	g, l := newNode(t, "node1", "127.0.0.1", nil)
	if err := g.SetLocalState([]byte("mine")); err != nil {
		t.Fatal(err)
	}
	before, _ := member(g, "node1")
	d := delegate{g}
	for _, seq := range []uint64{math.MaxUint64, math.MaxUint64 - 1, uint64(time.Now().Add(2 * time.Hour).UnixNano())} {
		// Correctly signed (a node whose key or clock went wrong): still
		// refused, for another origin and for this node's own name.
		d.NotifyMsg(encodeFor(t, "node2", seq, []byte("from the future")))
		d.MergeRemoteState(encodeBundle([][]byte{encodeFor(t, "node1", seq, []byte("pinned"))}), true)
	}
	if m, ok := member(g, "node2"); ok {
		t.Fatalf("state with a sequence from the future taken: %+v", m)
	}
	after, _ := member(g, "node1")
	if after.Version != before.Version || string(after.State) != "mine" {
		t.Fatalf("own state moved: v%d %q -> v%d %q", before.Version, before.State, after.Version, after.State)
	}
	if err := g.SetLocalState([]byte("next")); err != nil {
		t.Fatal(err)
	}
	if next, _ := member(g, "node1"); next.Version != before.Version+1 {
		t.Fatalf("own sequence %d after %d: wrapped or jumped", next.Version, before.Version)
	}
	if !strings.Contains(l.String(), "past this node's clock") {
		t.Error("no log line for the sequence from the future")
	}
	// A sequence ahead of the clock by less than the bound is taken (a
	// peer's clock a little fast).
	d.NotifyMsg(encodeFor(t, "node2", uint64(time.Now().Add(time.Minute).UnixNano()), []byte("fast clock")))
	if m, _ := member(g, "node2"); string(m.State) != "fast clock" {
		t.Fatalf("state from a slightly fast clock: %+v", m)
	}
}

func TestGossip_ReplayedOlderSignedStateIsDropped(t *testing.T) {
	g, l := newNode(t, "node1", "127.0.0.1", nil)
	d := delegate{g}
	base := uint64(time.Now().UnixNano())
	old := encodeFor(t, "node2", base, []byte(`{"healthy":false}`))
	d.NotifyMsg(old)
	d.NotifyMsg(encodeFor(t, "node2", base+1, []byte(`{"healthy":true}`)))
	for range 3 {
		d.NotifyMsg(old)
		d.MergeRemoteState(encodeBundle([][]byte{old}), false)
	}
	if m, _ := member(g, "node2"); string(m.State) != `{"healthy":true}` || m.Version != base+1 {
		t.Fatalf("replay rolled node2 back: v%d %q", m.Version, m.State)
	}
	if !strings.Contains(l.String(), "ignoring an older gossip state") {
		t.Error("replay not logged")
	}
}

func TestGossip_CompactStateVerifiesOnceTheCertificateIsKnown(t *testing.T) {
	g, _ := newNode(t, "node1", "127.0.0.1", nil)
	d := delegate{g}
	base := uint64(time.Now().UnixNano())
	id := theTestPKI.identity("node2")
	compact := func(seq uint64, payload []byte) []byte {
		full := encodeFor(t, "node2", seq, payload)
		env, _ := decodeEnvelope(full)
		h := certHash(id.cert)
		return encodeEnvelope(formCompact, h[:], env.sig, env.inner)
	}
	d.NotifyMsg(compact(base, []byte("a")))
	if _, ok := member(g, "node2"); ok {
		t.Fatal("compact state taken before its certificate was known")
	}
	d.NotifyMsg(encodeFor(t, "node2", base+1, []byte("b"))) // full: teaches the certificate
	d.NotifyMsg(compact(base+2, []byte("c")))
	if m, _ := member(g, "node2"); !bytes.Equal(m.State, []byte("c")) {
		t.Fatalf("compact state after the certificate: %q", m.State)
	}
	// What node1 keeps for push/pull is the full form.
	parts, err := decodeBundle(delegate{g}.LocalState(false))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if env, err := decodeEnvelope(p); err != nil || env.form != formFull {
			t.Fatalf("push/pull part: form %d, %v", env.form, err)
		}
	}
}

// FuzzDecodeSigned: no input makes the signed-envelope decoder or the
// verification path panic, and nothing that is not signed by the test
// identity of the origin it names is ever taken.
func FuzzDecodeSigned(f *testing.F) {
	var e encoder
	id := theTestPKI.identity("node1")
	for _, p := range [][]byte{nil, []byte("x"), telemetry("n", 1, 600)} {
		inner, err := e.encodeState(stateMsg{Origin: "node1", Seq: 42, Payload: p})
		if err != nil {
			f.Fatal(err)
		}
		sig, err := sign(id.key, inner)
		if err != nil {
			f.Fatal(err)
		}
		full := encodeEnvelope(formFull, id.cert, sig, inner)
		h := certHash(id.cert)
		f.Add(full)
		f.Add(encodeEnvelope(formCompact, h[:], sig, inner))
		f.Add(encodeBundle([][]byte{full, full}))
	}
	f.Add([]byte{msgSigned, formCompact, 32})
	g := &Gossip{cfg: Config{Name: "fuzz", VerifyOrigin: theTestPKI.verifyOrigin}, certs: make(certCache)}
	g.certs.add(id.cert)
	f.Fuzz(func(t *testing.T, b []byte) {
		if env, err := decodeEnvelope(b); err == nil {
			if len(env.sig) > maxSigSize || len(env.ref) > maxCertSize {
				t.Fatalf("decoded past the limits: ref %d, sig %d", len(env.ref), len(env.sig))
			}
			// Varints may be padded on the wire, so compare fields.
			again, err := decodeEnvelope(encodeEnvelope(env.form, env.ref, env.sig, env.inner))
			if err != nil || again.form != env.form || !bytes.Equal(again.ref, env.ref) || !bytes.Equal(again.sig, env.sig) || !bytes.Equal(again.inner, env.inner) {
				t.Fatalf("re-decode: %+v, %v", again, err)
			}
		}
		if m, _, _, err := g.verify(b); err == nil {
			// Only a real signature by node1's key verifies: the fuzzer
			// can reach this only by reusing a seed's signature.
			if m.Origin != "node1" {
				t.Fatalf("verified a state of %q", m.Origin)
			}
		}
		if parts, err := decodeBundle(b); err == nil {
			for _, p := range parts {
				_, _, _, _ = g.verify(p)
			}
		}
	})
}
