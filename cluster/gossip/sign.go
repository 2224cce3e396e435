package gossip

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
)

// Signed states. Every state a node publishes is signed with its node key,
// and the envelope names the certificate of that key, so that a holder of
// the gossip key (every member, or whoever stole a member's disk) cannot
// publish a state under another node's name:
//
//	signed: 0x03 | form (1 byte) | uvarint len(ref) | ref | uvarint len(sig) | sig | state message (0x01 ...)
//
// form 0 (full): ref is the sender's certificate (DER), as the cluster CA
// issued it. form 1 (compact): ref is the SHA-256 of that certificate, for
// a broadcast the full form would not fit; it verifies only at a receiver
// that already holds the certificate (each node sends its full form to
// every peer that comes alive, and every push/pull carries full forms).
//
// sig signs SHA-256(signDomain | state message) with the key of the
// certificate; Config.VerifyOrigin decides whether a certificate speaks for
// the origin the state message names. The signature does not cover ref:
// the certificate authenticates itself (it is checked against the CA), and
// both forms of one state carry the same signature.
const (
	msgSigned byte = 0x03

	formFull    byte = 0
	formCompact byte = 1

	// maxCertSize bounds a certificate in an envelope (a node certificate
	// of this product, ECDSA P-256 with a name and an IP, is about 500).
	maxCertSize = 4 << 10
	// maxSigSize bounds a signature (ECDSA P-256 ASN.1 is at most 72
	// bytes, Ed25519 64).
	maxSigSize = 160
	// signOverhead bounds what the envelope adds to a state message.
	signOverhead = 2 + 2*binary.MaxVarintLen64 + maxCertSize + maxSigSize
)

// signDomain separates these signatures from any other use of the node key
// (its TLS handshakes sign with it too).
const signDomain = "newbieha gossip state v1\x00"

// envelope is a decoded signed message.
type envelope struct {
	form  byte
	ref   []byte // certificate (full) or its SHA-256 (compact)
	sig   []byte
	inner []byte // the state message
}

// ErrForged is wrapped by the error of a state whose signature or
// certificate does not hold for the origin it names.
var ErrForged = errors.New("gossip state not signed by its origin")

// signedDigest is what the origin signs.
func signedDigest(inner []byte) []byte {
	h := sha256.New()
	h.Write([]byte(signDomain))
	h.Write(inner)
	return h.Sum(nil)
}

// sign signs a state message with key.
func sign(key crypto.Signer, inner []byte) ([]byte, error) {
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		msg := append([]byte(signDomain), inner...)
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	return key.Sign(rand.Reader, signedDigest(inner), crypto.SHA256)
}

// verifySig checks sig over a state message with pub.
func verifySig(pub crypto.PublicKey, inner, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if ecdsa.VerifyASN1(k, signedDigest(inner), sig) {
			return nil
		}
	case ed25519.PublicKey:
		if ed25519.Verify(k, append([]byte(signDomain), inner...), sig) {
			return nil
		}
	default:
		return fmt.Errorf("%w: key type %T cannot verify", ErrForged, pub)
	}
	return fmt.Errorf("%w: bad signature", ErrForged)
}

// certHash is the compact reference to a certificate.
func certHash(der []byte) [sha256.Size]byte { return sha256.Sum256(der) }

// encodeEnvelope frames a signed state message.
func encodeEnvelope(form byte, ref, sig, inner []byte) []byte {
	out := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(ref)+len(sig)+len(inner))
	out = append(out, msgSigned, form)
	out = binary.AppendUvarint(out, uint64(len(ref)))
	out = append(out, ref...)
	out = binary.AppendUvarint(out, uint64(len(sig)))
	out = append(out, sig...)
	return append(out, inner...)
}

// decodeEnvelope parses a signed message's framing (not the state inside,
// nor the signature). The returned slices alias b.
func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) > maxStateMsg+signOverhead {
		return envelope{}, fmt.Errorf("%w: signed message of %d bytes (limit %d)", errMalformed, len(b), maxStateMsg+signOverhead)
	}
	if len(b) < 2 || b[0] != msgSigned {
		if len(b) > 0 && b[0] == msgState {
			return envelope{}, fmt.Errorf("%w: unsigned state message", ErrForged)
		}
		return envelope{}, fmt.Errorf("%w: not a signed state message", errMalformed)
	}
	e := envelope{form: b[1]}
	rest := b[2:]
	refLen, n := binary.Uvarint(rest)
	switch {
	case n <= 0 || refLen > uint64(len(rest)-n):
		return envelope{}, fmt.Errorf("%w: bad certificate length", errMalformed)
	case e.form == formFull && (refLen == 0 || refLen > maxCertSize):
		return envelope{}, fmt.Errorf("%w: certificate of %d bytes", errMalformed, refLen)
	case e.form == formCompact && refLen != sha256.Size:
		return envelope{}, fmt.Errorf("%w: certificate hash of %d bytes", errMalformed, refLen)
	case e.form != formFull && e.form != formCompact:
		return envelope{}, fmt.Errorf("%w: unknown form %d", errMalformed, e.form)
	}
	rest = rest[n:]
	e.ref, rest = rest[:refLen], rest[refLen:]
	sigLen, n := binary.Uvarint(rest)
	if n <= 0 || sigLen == 0 || sigLen > maxSigSize || sigLen > uint64(len(rest)-n) {
		return envelope{}, fmt.Errorf("%w: bad signature length", errMalformed)
	}
	rest = rest[n:]
	e.sig, e.inner = rest[:sigLen], rest[sigLen:]
	return e, nil
}

// identity is this node's signing key and certificate.
type identity struct {
	key  crypto.Signer
	cert []byte
	hash [sha256.Size]byte
}

// newIdentity checks that key is the key of the certificate der.
func newIdentity(key crypto.Signer, der []byte) (identity, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return identity{}, fmt.Errorf("gossip config: Certificate: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	if !ok || !pub.Equal(c.PublicKey) {
		return identity{}, errors.New("gossip config: SigningKey is not the key of Certificate")
	}
	return identity{key: key, cert: bytes.Clone(der), hash: certHash(der)}, nil
}

// certCache holds certificates that verified, by hash, so that a compact
// envelope can be checked. Bounded: a full cache forgets everything and
// relearns from the next full forms (push/pull). Guarded by Gossip.mu.
type certCache map[[sha256.Size]byte][]byte

func (c certCache) add(der []byte) {
	h := certHash(der)
	if _, ok := c[h]; ok {
		return
	}
	if len(c) >= 2*maxOrigins {
		clear(c)
	}
	c[h] = bytes.Clone(der)
}

// SetCertificate replaces the certificate this node's states name, after a
// renewal for the same SigningKey; states published from now on carry it.
func (g *Gossip) SetCertificate(der []byte) error {
	id, err := newIdentity(g.id.key, der)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.id = id
	return nil
}
