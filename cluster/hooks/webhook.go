package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// The headers of a webhook request.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// body under the secret (absent when the hook has no secret_file).
	SignatureHeader = "X-Newbieha-Signature"
	// EventHeader is the event's kind, IDHeader its id, AttemptHeader the
	// attempt (1 for the first).
	EventHeader   = "X-Newbieha-Event"
	IDHeader      = "X-Newbieha-Event-Id"
	AttemptHeader = "X-Newbieha-Attempt"
)

// MinSecretLen is the shortest secret a secret file may hold.
const MinSecretLen = 16

// Sign returns the SignatureHeader value for body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether sig (a SignatureHeader value) signs body under
// secret, in constant time: what a receiver written in Go runs.
func Verify(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

// ReadSecret reads a webhook secret file: its content less one trailing
// newline, at least MinSecretLen bytes, in a file no group or other user
// may read. Errors name the file, never the content.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s: mode %04o lets other users read it (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(b) < MinSecretLen {
		return nil, fmt.Errorf("secret file %s: %d bytes, want at least %d", path, len(b), MinSecretLen)
	}
	return b, nil
}

// post runs one attempt of a webhook: a 2xx answer delivers; a 408, 429
// or 5xx answer, or no answer, is tried again; any other answer is final.
func post(ctx context.Context, d Doer, w Webhook, e Event, attempt int) error {
	body, err := json.Marshal(e)
	if err != nil {
		return &permanentError{fmt.Errorf("encode event: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return &permanentError{fmt.Errorf("webhook %s: %w", redact(w.URL), err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "newbieha-hooks")
	req.Header.Set(EventHeader, e.Event)
	req.Header.Set(IDHeader, e.ID)
	req.Header.Set(AttemptHeader, strconv.Itoa(attempt))
	if w.SecretFile != "" {
		secret, err := ReadSecret(w.SecretFile)
		if err != nil {
			return err
		}
		req.Header.Set(SignatureHeader, Sign(secret, body))
	}
	resp, err := d.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", redact(w.URL), stripURL(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("webhook %s: answered %s: %q", redact(w.URL), resp.Status, strings.TrimSpace(string(snippet)))
	if resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return err
	}
	return &permanentError{err}
}

// redact is the URL as logs show it: scheme and host only (a URL's path
// or query may carry a token, as some chat services' do).
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "(bad url)"
	}
	host, _, _ := strings.Cut(rest, "/")
	host, _, _ = strings.Cut(host, "?")
	return scheme + "://" + host
}

// stripURL keeps the cause of a client error without the full URL that
// *url.Error prints.
func stripURL(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && strings.Contains(err.Error(), "://") {
		if inner := u.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
