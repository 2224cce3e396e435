package drill

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem in a runbook: the line it is on, the key path
// (for example "steps[2].duration") and what is wrong.
type FieldError struct {
	// Line is the 1-based line of the offending key or value; 0 when the
	// problem is not tied to a line (an empty document).
	Line int
	// Path is the key path from the document root, with list indexes
	// 0-based: "steady_state.probe.timeout", "steps[2].from[0]".
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error reads "line 12: steps[2].duration: \"5x\" is not a duration".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one runbook, in the order of the
// document. Parse returns it (as error) when there is at least one.
type Errors []*FieldError

// Error joins the problems one a line.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find each *FieldError.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// decoder walks a yaml.Node tree against the runbook schema and collects
// errors instead of stopping at the first, so an operator fixes a runbook
// in one pass.
type decoder struct {
	errs Errors
	// lines holds the line of every key seen, by path, for errors found
	// after decoding (the rules that tie keys together).
	lines map[string]int
}

// lineOf is the line of the key at path, or fallback when it is absent.
func (d *decoder) lineOf(path string, fallback int) int {
	if l, ok := d.lines[path]; ok {
		return l
	}
	return fallback
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &FieldError{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// field is one key of a mapping with its key node (for the line of an
// unknown or misplaced key) and its value node.
type field struct {
	key   *yaml.Node
	value *yaml.Node
}

// mapping checks that n is a mapping whose keys are all in allowed and
// appear once, and returns its fields by key. It reports every unknown or
// repeated key; ok is false when n is not a mapping at all.
func (d *decoder) mapping(n *yaml.Node, path string, allowed ...string) (map[string]field, bool) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", describe(n))
		return nil, false
	}
	known := make(map[string]bool, len(allowed))
	for _, k := range allowed {
		known[k] = true
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "a key must be a plain word, got %s", describe(k))
			continue
		}
		kp := join(path, k.Value)
		if !known[k.Value] {
			d.errorf(k, kp, "unknown key (want %s)", wantList(allowed))
			continue
		}
		if prev, dup := out[k.Value]; dup {
			d.errorf(k, kp, "repeated key (first on line %d)", prev.key.Line)
			continue
		}
		out[k.Value] = field{key: k, value: v}
		if d.lines == nil {
			d.lines = map[string]int{}
		}
		d.lines[kp] = k.Line
	}
	return out, true
}

func wantList(allowed []string) string {
	s := append([]string(nil), allowed...)
	sort.Strings(s)
	return strings.Join(s, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// describe names what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unknown node"
}

// scalar checks that n is a non-null scalar.
func (d *decoder) scalar(n *yaml.Node, path string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, path, "want a value, got %s", describe(n))
		return false
	}
	return true
}

// str reads a string; any non-null scalar is taken as written.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if !d.scalar(n, path) {
		return "", false
	}
	return n.Value, true
}

// boolean reads true or false.
func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	if !d.scalar(n, path) {
		return false, false
	}
	if n.Tag != "!!bool" {
		d.errorf(n, path, "%q is not true or false", n.Value)
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(n.Value))
	if err != nil {
		d.errorf(n, path, "%q is not true or false", n.Value)
		return false, false
	}
	return b, true
}

// integer reads a decimal integer within [lo, hi].
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	if !d.scalar(n, path) {
		return 0, false
	}
	v, err := strconv.Atoi(n.Value)
	if n.Tag != "!!int" || err != nil {
		d.errorf(n, path, "%q is not a whole number", n.Value)
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(n, path, "%d is out of range (%d-%d)", v, lo, hi)
		return 0, false
	}
	return v, true
}

// duration reads a Go duration ("500ms", "1m30s") within (0, max].
func (d *decoder) duration(n *yaml.Node, path string, max time.Duration) (time.Duration, bool) {
	if !d.scalar(n, path) {
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, numErr := strconv.ParseFloat(n.Value, 64); numErr == nil {
			d.errorf(n, path, "%q is not a duration (give a unit: %ss or %sms)", n.Value, n.Value, n.Value)
		} else {
			d.errorf(n, path, "%q is not a duration (for example 500ms, 30s, 2m)", n.Value)
		}
		return 0, false
	}
	if v <= 0 {
		d.errorf(n, path, "%s must be > 0", v)
		return 0, false
	}
	if v > max {
		d.errorf(n, path, "%s is longer than the most allowed, %s", v, max)
		return 0, false
	}
	return v, true
}

// sequence checks that n is a list of at most max items.
func (d *decoder) sequence(n *yaml.Node, path string, max int) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want a list, got %s", describe(n))
		return nil, false
	}
	if len(n.Content) > max {
		d.errorf(n, path, "%d items; at most %d", len(n.Content), max)
		return nil, false
	}
	return n.Content, true
}

// noAliases reports every alias in the tree: a runbook is read by people
// before it is run, and "*x" hides what a step does.
func (d *decoder) noAliases(n *yaml.Node, depth int) {
	if depth > maxDepth {
		d.errorf(n, "", "nested deeper than %d levels", maxDepth)
		return
	}
	if n.Kind == yaml.AliasNode {
		d.errorf(n, "", "aliases (*%s) are not allowed in a runbook; write the value out", n.Value)
		return
	}
	for _, c := range n.Content {
		d.noAliases(c, depth+1)
		if len(d.errs) > maxErrors {
			return
		}
	}
}
