package keepalived

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrInclude is returned (wrapped in a *SyntaxError) for an include
// statement: the included files are not read, so a conversion could miss
// what they hold.
var ErrInclude = errors.New("include is not supported")

// SyntaxError is a problem in the configuration text, at a line.
type SyntaxError struct {
	// Line is the 1-based line of the problem.
	Line int
	// Keyword is the statement's keyword, when there is one.
	Keyword string
	// Msg says what is wrong.
	Msg string
	// Err is a sentinel (ErrInclude) or nil.
	Err error
}

// Error returns "line N: keyword: msg".
func (e *SyntaxError) Error() string {
	if e.Keyword != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Keyword, e.Msg)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Unwrap returns the sentinel, if any.
func (e *SyntaxError) Unwrap() error { return e.Err }

// Stmt is one statement: a keyword, its arguments on the same line, and,
// when a { follows, the statements of its block.
type Stmt struct {
	// Line is where the keyword is.
	Line int
	// Keyword is the first word.
	Keyword string
	// Args are the other words of the line (quotes removed).
	Args []string
	// Block holds the statements inside { }; HasBlock says whether there
	// was a block at all (it may be empty).
	Block    []*Stmt
	HasBlock bool
}

// String returns the statement's line as written (without its block).
func (s *Stmt) String() string {
	if len(s.Args) == 0 {
		return s.Keyword
	}
	return s.Keyword + " " + strings.Join(s.Args, " ")
}

type tokKind int

const (
	tokWord tokKind = iota
	tokOpen
	tokClose
)

type token struct {
	kind tokKind
	text string
	line int
}

// lex splits the text into words, braces and quoted strings. A # or ! that
// begins a word starts a comment to the end of the line (Keepalived's
// rule); braces are tokens of their own even when they touch a word.
func lex(src []byte) ([]token, error) {
	var toks []token
	line := 1
	s := string(src)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#' || c == '!':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			toks = append(toks, token{tokOpen, "{", line})
			i++
		case c == '}':
			toks = append(toks, token{tokClose, "}", line})
			i++
		case c == '"':
			start := line
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '"' {
					closed = true
					i++
					break
				}
				if s[i] == '\n' {
					break // Keepalived's strings never span lines
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, &SyntaxError{Line: start, Msg: "quoted string not closed on its line"}
			}
			if w := b.String(); !text(w) {
				return nil, &SyntaxError{Line: start, Msg: fmt.Sprintf("%q is not text (binary or control characters)", w)}
			}
			toks = append(toks, token{tokWord, b.String(), start})
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n\f\v{}\"", rune(s[j])) {
				j++
			}
			w := s[i:j]
			if !text(w) {
				return nil, &SyntaxError{Line: line, Msg: fmt.Sprintf("%q is not text (binary or control characters)", w)}
			}
			toks = append(toks, token{tokWord, w, line})
			i = j
		}
	}
	return toks, nil
}

// text reports whether w is UTF-8 without control characters (tabs are
// blanks, never inside a word).
func text(w string) bool {
	return utf8.ValidString(w) && !strings.ContainsFunc(w, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// parseTree reads the statements of a whole file.
func parseTree(src []byte) ([]*Stmt, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &treeParser{toks: toks}
	stmts, err := p.block(0, nil)
	if err != nil {
		return nil, err
	}
	return stmts, nil
}

type treeParser struct {
	toks []token
	pos  int
}

// block reads statements until the } that closes parent (or EOF at the top).
func (p *treeParser) block(depth int, parent *Stmt) ([]*Stmt, error) {
	var out []*Stmt
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		switch t.kind {
		case tokClose:
			if depth == 0 {
				return nil, &SyntaxError{Line: t.line, Msg: "} closes no block"}
			}
			p.pos++
			return out, nil
		case tokOpen:
			return nil, &SyntaxError{Line: t.line, Msg: "{ with no keyword before it"}
		}
		st := &Stmt{Line: t.line, Keyword: t.text}
		p.pos++
		for p.pos < len(p.toks) && p.toks[p.pos].kind == tokWord && p.toks[p.pos].line == st.Line {
			st.Args = append(st.Args, p.toks[p.pos].text)
			p.pos++
		}
		if err := refuse(st); err != nil {
			return nil, err
		}
		if p.pos < len(p.toks) && p.toks[p.pos].kind == tokOpen {
			p.pos++
			st.HasBlock = true
			inner, err := p.block(depth+1, st)
			if err != nil {
				return nil, err
			}
			st.Block = inner
		}
		out = append(out, st)
	}
	if parent != nil {
		return nil, &SyntaxError{Line: parent.Line, Keyword: parent.Keyword, Msg: "the block opened here is never closed (missing })"}
	}
	return out, nil
}

// refuse rejects what cannot be converted faithfully: includes (the other
// files are not read), conditional lines (@host) and parameter definitions
// ($NAME=), whose meaning depends on the host that reads the file.
func refuse(st *Stmt) error {
	switch {
	case st.Keyword == "include":
		return &SyntaxError{Line: st.Line, Keyword: "include", Err: ErrInclude,
			Msg: fmt.Sprintf("%q is not read: includes are not supported; paste the included file in place of this line and run again", strings.Join(st.Args, " "))}
	case strings.HasPrefix(st.Keyword, "@"):
		return &SyntaxError{Line: st.Line, Keyword: st.Keyword,
			Msg: "conditional configuration (@name) is not supported; keep the lines of the host you convert, without the @ prefix"}
	case strings.HasPrefix(st.Keyword, "$"):
		return &SyntaxError{Line: st.Line, Keyword: st.Keyword,
			Msg: "parameter substitution ($NAME) is not supported; write the values out"}
	}
	return nil
}
