package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// FaultMode names a fault the stub can be switched into.
type FaultMode string

// The fault modes. The /fault endpoint itself is never affected by any of them.
const (
	// FaultNone answers normally.
	FaultNone FaultMode = "none"
	// FaultError answers /health and /generate with the configured status.
	FaultError FaultMode = "error"
	// FaultSlow waits the configured delay before answering normally.
	FaultSlow FaultMode = "slow"
	// FaultHang never answers /health or /generate: the handler blocks until
	// the client gives up or the server stops.
	FaultHang FaultMode = "hang"
	// FaultExit makes the process exit with status 3 right after it has
	// answered the fault request that set it.
	FaultExit FaultMode = "exit"
)

// ExitStatus is the process exit status used by FaultExit.
const ExitStatus = 3

// Defaults for the fault parameters.
const (
	DefaultFaultStatus = http.StatusInternalServerError
	DefaultFaultDelay  = 2 * time.Second
)

// maxBody bounds request bodies; a prompt is a few hundred bytes.
const maxBody = 1 << 20

// ImageSize is the width and height of the generated PNG in pixels.
const ImageSize = 64

// ParseFaultMode returns the mode named by s ("" means none).
func ParseFaultMode(s string) (FaultMode, error) {
	switch m := FaultMode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return FaultNone, nil
	case FaultNone, FaultError, FaultSlow, FaultHang, FaultExit:
		return m, nil
	default:
		return "", fmt.Errorf("unknown fault mode %q (want none, error, slow, hang or exit)", s)
	}
}

// Fault is the fault state of the stub.
type Fault struct {
	Mode   FaultMode     `json:"mode"`
	Delay  time.Duration `json:"-"`
	Status int           `json:"status"`
}

// faultJSON is the wire form of Fault: the delay as a Go duration string.
// For, on POST /fault only, bounds the fault: after it the stub answers
// normally again by itself (a drill's fault ends even if whoever set it
// is gone).
type faultJSON struct {
	Mode   string `json:"mode"`
	Delay  string `json:"delay,omitempty"`
	Status int    `json:"status,omitempty"`
	For    string `json:"for,omitempty"`
}

// MaxFaultFor is the longest bound POST /fault takes.
const MaxFaultFor = 24 * time.Hour

// MarshalJSON writes the delay as a duration string such as "2s".
func (f Fault) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultJSON{Mode: string(f.Mode), Delay: f.Delay.String(), Status: f.Status})
}

// withDefaults fills a zero status and delay.
func (f Fault) withDefaults() Fault {
	if f.Mode == "" {
		f.Mode = FaultNone
	}
	if f.Status == 0 {
		f.Status = DefaultFaultStatus
	}
	if f.Delay == 0 {
		f.Delay = DefaultFaultDelay
	}
	return f
}

// Validate checks the fault, naming the bad field.
func (f Fault) Validate() error {
	if _, err := ParseFaultMode(string(f.Mode)); err != nil {
		return fmt.Errorf("field \"mode\": %w", err)
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		return fmt.Errorf("field \"status\": %d is not an HTTP status (100-599)", f.Status)
	}
	if f.Delay < 0 {
		return fmt.Errorf("field \"delay\": %s is negative", f.Delay)
	}
	return nil
}

// Options configures the handler made by NewServer.
type Options struct {
	// Node is sent in the X-Served-By header of every response.
	Node string
	// Fault is the fault state at start.
	Fault Fault
	// Exit is called after a request setting FaultExit has been answered
	// and flushed; main exits the process from it. Nil does nothing.
	Exit func()
}

// Server is the stub model server's HTTP handler. Close releases requests
// held by the hang and slow faults.
type Server struct {
	node string
	exit func()
	mux  *http.ServeMux

	mu    sync.Mutex
	fault Fault
	// gen counts the faults set, so that a bounded fault's timer ends
	// only the fault it was set with.
	gen   uint64
	timer *time.Timer

	closeOnce sync.Once
	done      chan struct{}
}

// NewServer returns the stub's handler.
func NewServer(opts Options) (*Server, error) {
	if opts.Node == "" {
		return nil, errors.New("node name is empty")
	}
	if err := opts.Fault.Validate(); err != nil {
		return nil, fmt.Errorf("fault: %w", err)
	}
	s := &Server{
		node:  opts.Node,
		exit:  opts.Exit,
		fault: opts.Fault.withDefaults(),
		mux:   http.NewServeMux(),
		done:  make(chan struct{}),
	}
	s.mux.HandleFunc("GET /health", s.faulty(s.handleHealth))
	s.mux.HandleFunc("POST /generate", s.faulty(s.handleGenerate))
	s.mux.HandleFunc("GET /fault", s.handleGetFault)
	s.mux.HandleFunc("POST /fault", s.handleSetFault)
	return s, nil
}

// ServeHTTP sets X-Served-By on every response and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Served-By", s.node)
	s.mux.ServeHTTP(w, r)
}

// Close releases every request held by the hang or slow fault. It is safe
// to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
}

// Fault returns the current fault state.
func (s *Server) Fault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

// faulty wraps a handler with the current fault.
func (s *Server) faulty(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f := s.Fault()
		switch f.Mode {
		case FaultError:
			writeJSON(w, f.Status, map[string]string{"error": "injected fault", "mode": string(f.Mode)})
			return
		case FaultSlow:
			t := time.NewTimer(f.Delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			case <-s.done:
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "shutting down"})
				return
			}
		case FaultHang:
			select {
			case <-r.Context().Done():
			case <-s.done:
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "shutting down"})
			}
			return
		}
		next(w, r)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// GenerateRequest is the body of POST /generate.
type GenerateRequest struct {
	Prompt *string `json:"prompt"`
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	var req GenerateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if req.Prompt == nil || strings.TrimSpace(*req.Prompt) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `field "prompt" is required and must be a non-empty string`})
		return
	}
	img, err := RenderPNG(*req.Prompt)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	sum := sha256.Sum256([]byte(*req.Prompt))
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("X-Prompt-SHA256", hex.EncodeToString(sum[:]))
	w.Header().Set("Content-Length", fmt.Sprint(len(img)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(img)
}

func (s *Server) handleGetFault(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Fault())
}

func (s *Server) handleSetFault(w http.ResponseWriter, r *http.Request) {
	var req faultJSON
	if err := decodeJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	mode, err := ParseFaultMode(req.Mode)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("field \"mode\": %v", err)})
		return
	}
	f := Fault{Mode: mode, Status: req.Status}
	if req.Delay != "" {
		d, err := time.ParseDuration(req.Delay)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("field \"delay\": %v", err)})
			return
		}
		f.Delay = d
	}
	if err := f.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	var bound time.Duration
	if req.For != "" {
		d, err := time.ParseDuration(req.For)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("field \"for\": %v", err)})
			return
		}
		if d <= 0 || d > MaxFaultFor {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("field \"for\": %s is not between 0 and %s", d, MaxFaultFor)})
			return
		}
		bound = d
	}
	f = f.withDefaults()
	s.set(f, bound)
	writeJSON(w, http.StatusOK, f)
	if f.Mode == FaultExit && s.exit != nil {
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		s.exit()
	}
}

// set makes f the fault; with a bound, the stub switches back to none
// after it unless another fault was set meanwhile.
func (s *Server) set(f Fault, bound time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	s.gen++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if bound > 0 {
		gen := s.gen
		s.timer = time.AfterFunc(bound, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.gen == gen {
				s.fault = Fault{Mode: FaultNone}.withDefaults()
				s.timer = nil
			}
		})
	}
}

// decodeJSON decodes one JSON object from the bounded request body.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// RenderPNG draws a 64x64 PNG determined by the prompt alone: an 8x8
// mirrored cell pattern and two colours taken from the prompt's SHA-256.
// The same prompt always gives the same bytes.
func RenderPNG(prompt string) ([]byte, error) {
	sum := sha256.Sum256([]byte(prompt))
	fg := color.NRGBA{R: sum[8], G: sum[9], B: sum[10], A: 0xff}
	bg := color.NRGBA{R: ^sum[8], G: ^sum[9], B: ^sum[10], A: 0xff}
	const cells = 8
	const cell = ImageSize / cells
	img := image.NewNRGBA(image.Rect(0, 0, ImageSize, ImageSize))
	for cy := 0; cy < cells; cy++ {
		for cx := 0; cx < cells; cx++ {
			// Bits of bytes 0..7 choose cells; x is mirrored for an
			// identicon look, so only 4 columns are read per row.
			col := cx
			if col >= cells/2 {
				col = cells - 1 - col
			}
			on := sum[cy]>>(uint(col))&1 == 1
			c := bg
			if on {
				c = fg
			}
			// Shade the cell slightly by a further hash byte so that
			// prompts with equal bit patterns still differ in pixels.
			c.R ^= sum[16+(cy*cells+cx)%16] & 0x0f
			for y := cy * cell; y < (cy+1)*cell; y++ {
				for x := cx * cell; x < (cx+1)*cell; x++ {
					img.SetNRGBA(x, y, c)
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// Probe GETs url and returns nil when it answers 200. It backs the
// container HEALTHCHECK, since a scratch image has no curl.
func Probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d", url, resp.StatusCode)
	}
	return nil
}
