package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// TokenPrefix starts every join token; the number is the format version.
const TokenPrefix = "nbha1"

// Token is a parsed join token: "nbha1.<id>.<secret>.<ca hash>". The id
// names the token in the replicated state, the secret proves the holder may
// join (only its hash is replicated), and the CA hash lets the joining node
// check it talks to the right cluster before it sends anything.
type Token struct {
	ID     string
	Secret string
	CAHash string
}

var (
	tokenIDRe     = regexp.MustCompile(`^[a-z0-9]{6}$`)
	tokenSecretRe = regexp.MustCompile(`^[a-f0-9]{32}$`)
	caHashRe      = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// ErrMalformedToken is returned for a token that does not parse.
var ErrMalformedToken = errors.New("malformed join token")

// NewToken makes a fresh random token pinned to caHash.
func NewToken(caHash string) (Token, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	raw := make([]byte, 6+16)
	if _, err := rand.Read(raw); err != nil {
		return Token{}, fmt.Errorf("random token: %w", err)
	}
	id := make([]byte, 6)
	for i := range id {
		id[i] = alphabet[int(raw[i])%len(alphabet)]
	}
	return Token{ID: string(id), Secret: hex.EncodeToString(raw[6:]), CAHash: caHash}, nil
}

// String returns the token in the form operators paste.
func (t Token) String() string {
	return strings.Join([]string{TokenPrefix, t.ID, t.Secret, t.CAHash}, ".")
}

// SecretHash is the hex SHA-256 of the secret, the form kept in the log.
func (t Token) SecretHash() string { return HashSecret(t.Secret) }

// HashSecret returns the hex SHA-256 of a token secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches compares a secret with a stored hash in constant time.
func SecretMatches(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(hash)) == 1
}

// ParseToken parses a token and says which part is wrong when it does not.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != TokenPrefix {
		return Token{}, fmt.Errorf("%w: want %s.<id>.<secret>.<ca-hash>", ErrMalformedToken, TokenPrefix)
	}
	t := Token{ID: parts[1], Secret: parts[2], CAHash: parts[3]}
	switch {
	case !tokenIDRe.MatchString(t.ID):
		return Token{}, fmt.Errorf("%w: id %q is not 6 lowercase letters or digits", ErrMalformedToken, t.ID)
	case !tokenSecretRe.MatchString(t.Secret):
		return Token{}, fmt.Errorf("%w: secret is not 32 hex digits", ErrMalformedToken)
	case !caHashRe.MatchString(t.CAHash):
		return Token{}, fmt.Errorf("%w: ca hash is not 64 hex digits", ErrMalformedToken)
	}
	return t, nil
}
