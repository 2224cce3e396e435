package keepalived

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// CheckScript is what RecogniseScript found in a health check script: the
// usual "container running, HTTP 200, nvidia-smi" shape. Each Line is
// where it was found (0: not found).
type CheckScript struct {
	// Container is the container whose running state is checked
	// (docker inspect ... NAME, docker ps --filter name=NAME).
	Container     string
	ContainerLine int
	// URL is the address requested with curl or wget; ExpectStatus the
	// status the script compares against (200 when it compares none).
	URL          string
	ExpectStatus int
	HTTPLine     int
	// GPU is set when the script runs nvidia-smi.
	GPU     bool
	GPULine int
	// Unrecognised are the lines that do something else: a native check
	// does not cover them, so the script must keep running.
	Unrecognised []ScriptLine
}

// ScriptLine is a line of a script.
type ScriptLine struct {
	Line int
	Text string
}

// Complete reports whether every command of the script was recognised.
func (c CheckScript) Complete() bool {
	return len(c.Unrecognised) == 0 && (c.Container != "" || c.URL != "" || c.GPU)
}

var (
	reDockerInspect = regexp.MustCompile(`\b(?:docker|podman)\s+(?:container\s+)?inspect\s+(.*)`)
	reDockerPs      = regexp.MustCompile(`\b(?:docker|podman)\s+(?:container\s+)?(?:ps|ls)\b.*?(?:--filter[ =]|-f\s+)["']?name=\^?([A-Za-z0-9][A-Za-z0-9_.-]*)`)
	reHTTPClient    = regexp.MustCompile(`\b(?:curl|wget)\b`)
	reURL           = regexp.MustCompile(`https?://[^\s"'` + "`" + `)]+`)
	reNvidiaSMI     = regexp.MustCompile(`\bnvidia-smi\b`)
	reStatusCompare = regexp.MustCompile(`(?:-ne|-eq|!=|==|=)\s*["']?([1-5][0-9][0-9])\b`)
	// reHarmless are lines that run no check of their own: control flow,
	// exits, tests of variables, output.
	reHarmless = regexp.MustCompile(`^(?:if|then|else|elif|fi|do|done|esac|;;|exit(?:\s+\d+)?|return(?:\s+\d+)?|set\s+-[a-z]+|true|false|echo\b|printf\b|logger\b|[{}]|\[\[?\s|test\s)`)
	reAssign   = regexp.MustCompile(`^(?:local\s+|export\s+|readonly\s+)?[A-Za-z_][A-Za-z0-9_]*=`)
	reTestOnly = regexp.MustCompile(`^(?:if|elif|while|until)\s+!?\s*\[\[?\s.*\]\]?\s*;?\s*(?:then|do)?$`)
)

// RecogniseScript looks for the usual checks in a shell script with simple
// patterns, line by line (comments are ignored). Whatever else the script
// runs is listed in Unrecognised, so the caller keeps the script.
func RecogniseScript(src []byte) CheckScript {
	var c CheckScript
	for i, raw := range strings.Split(string(src), "\n") {
		n := i + 1
		line := stripShellComment(strings.TrimSpace(raw))
		if line == "" {
			continue
		}
		found := false
		if m := reDockerInspect.FindStringSubmatch(line); m != nil && strings.Contains(line, "State.") {
			if name := firstOperand(m[1]); name != "" {
				if c.Container == "" {
					c.Container, c.ContainerLine = name, n
				}
				found = true
			}
		}
		if m := reDockerPs.FindStringSubmatch(line); m != nil {
			if c.Container == "" {
				c.Container, c.ContainerLine = m[1], n
			}
			found = true
		}
		if reHTTPClient.MatchString(line) {
			if u := reURL.FindString(line); usableURL(u) {
				if c.URL == "" {
					c.URL, c.HTTPLine = u, n
				}
				found = true
			}
		}
		if reNvidiaSMI.MatchString(line) {
			if !c.GPU {
				c.GPU, c.GPULine = true, n
			}
			found = true
		}
		if m := reStatusCompare.FindStringSubmatch(line); m != nil && c.URL != "" && c.ExpectStatus == 0 {
			c.ExpectStatus, _ = strconv.Atoi(m[1])
			found = true
		}
		if found || harmless(line) {
			continue
		}
		c.Unrecognised = append(c.Unrecognised, ScriptLine{Line: n, Text: line})
	}
	if c.URL != "" && c.ExpectStatus == 0 {
		c.ExpectStatus = 200
	}
	return c
}

// usableURL reports whether u is a literal http(s) URL with a host (not
// one built from shell variables).
func usableURL(u string) bool {
	p, err := url.Parse(u)
	return u != "" && err == nil && !strings.ContainsAny(u, "$`{}") && (p.Scheme == "http" || p.Scheme == "https") && p.Hostname() != ""
}

// harmless reports whether a line runs no check of its own.
func harmless(line string) bool {
	if strings.HasPrefix(line, "#!") || reTestOnly.MatchString(line) {
		return true
	}
	if reAssign.MatchString(line) {
		// A plain assignment is harmless; one that runs a command is not.
		return !strings.Contains(line, "$(") && !strings.Contains(line, "`")
	}
	return reHarmless.MatchString(line)
}

// stripShellComment removes a # comment: at the start, or after a blank
// outside quotes.
func stripShellComment(line string) string {
	if strings.HasPrefix(line, "#!") {
		return line
	}
	var q byte
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '\'' || c == '"':
			q = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimSpace(line[:i])
		}
	}
	return line
}

// firstOperand returns the first word of a docker command's rest that is
// not an option or an option's value: the container name.
func firstOperand(rest string) string {
	words := shellWords(rest)
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "-f" || w == "--format" || w == "--type" || w == "-s":
			if w != "-s" {
				i++
			}
		case strings.HasPrefix(w, "-"):
		default:
			if ok, _ := regexp.MatchString(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`, w); ok {
				return w
			}
			return ""
		}
	}
	return ""
}

// shellWords splits on blanks, honouring simple quotes, and stops at a
// redirection, pipe, ) or ;.
func shellWords(s string) []string {
	var out []string
	var b strings.Builder
	var q byte
	in := false
	flush := func() {
		if in {
			out = append(out, b.String())
		}
		b.Reset()
		in = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				b.WriteByte(c)
			}
		case c == '\'' || c == '"':
			q, in = c, true
		case c == ' ' || c == '\t':
			flush()
		case c == '|' || c == ';' || c == ')' || c == '&' || c == '>' || c == '<':
			flush()
			return out
		case c >= '0' && c <= '9' && i+1 < len(s) && s[i+1] == '>' && !in:
			flush()
			return out
		default:
			b.WriteByte(c)
			in = true
		}
	}
	flush()
	return out
}
