package health

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
)

// pngSignature starts every PNG file (RFC 2083 section 3.1).
var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// Bounds on what an HTTP check reads of a response.
const (
	// httpSnippet is how much of an unexpected response body is quoted.
	httpSnippet = 256
	// httpMaxBody is how much of a successful body is read; the end-to-end
	// probe reads the whole image so that a transfer cut short fails.
	httpMaxBody = 64 << 20
)

// NewHTTPClient returns the client HTTP checks use by default: no proxy
// from the environment (the model is local), no keep-alive (each sample
// opens a fresh connection, as a new client would), no overall timeout (the
// check's context bounds each sample).
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       (&net.Dialer{}).DialContext,
			DisableKeepAlives: true,
		},
	}
}

// httpProber implements the http and http-generate kinds.
type httpProber struct {
	cfg    HTTPConfig
	client *http.Client
}

func (p *httpProber) Probe(ctx context.Context) Sample {
	var body io.Reader
	if p.cfg.Body != "" {
		body = strings.NewReader(p.cfg.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.cfg.Method, p.cfg.URL, body)
	if err != nil {
		return Sample{Output: fmt.Sprintf("build request: %v", err)}
	}
	if p.cfg.Body != "" {
		req.Header.Set("Content-Type", p.cfg.ContentType)
	}
	req.Header.Set("User-Agent", "newbieha-health")
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		return Sample{Output: err.Error()}
	}
	defer resp.Body.Close()

	if resp.StatusCode != p.cfg.ExpectStatus {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, httpSnippet))
		out := fmt.Sprintf("HTTP %s (want %d)", resp.Status, p.cfg.ExpectStatus)
		if s := oneLine(string(snippet)); s != "" {
			out += ": " + s
		}
		return Sample{Output: out}
	}
	ct := resp.Header.Get("Content-Type")
	if want := p.cfg.ExpectContentType; want != "" {
		got, _, err := mime.ParseMediaType(ct)
		if err != nil || !strings.EqualFold(got, want) {
			return Sample{Output: fmt.Sprintf("HTTP %s with content type %q (want %q)", resp.Status, ct, want)}
		}
	}
	limited := io.LimitReader(resp.Body, httpMaxBody)
	head := make([]byte, len(pngSignature))
	hn, err := io.ReadFull(limited, head)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil // a short body; judged below
	}
	var rest int64
	if err == nil {
		rest, err = io.Copy(io.Discard, limited)
	}
	n := int64(hn) + rest
	if err != nil {
		return Sample{Output: fmt.Sprintf("HTTP %s, body cut short after %d bytes: %v", resp.Status, n, err)}
	}
	if strings.EqualFold(p.cfg.ExpectContentType, "image/png") && !bytes.Equal(head[:hn], pngSignature) {
		return Sample{Output: fmt.Sprintf("HTTP %s, %s body of %d bytes is not a PNG image", resp.Status, ct, n)}
	}
	elapsed := time.Since(start).Round(time.Millisecond)
	if p.cfg.ExpectContentType != "" {
		return Sample{OK: true, Output: fmt.Sprintf("HTTP %s, %s, %d bytes in %v", resp.Status, ct, n, elapsed)}
	}
	return Sample{OK: true, Output: fmt.Sprintf("HTTP %s in %v", resp.Status, elapsed)}
}
