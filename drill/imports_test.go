package drill

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps drill pure and a leaf: besides the standard library
// its non-test files import only gopkg.in/yaml.v3, and nothing that does
// network or process I/O (the runner does that, elsewhere).
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := []string{"net", "net/http", "os/exec", "syscall", "github.com/newbieha/newbieha/"}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path == "gopkg.in/yaml.v3" {
				continue
			}
			if strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
				t.Errorf("%s imports %s: drill may import only the standard library and yaml.v3", file, path)
			}
			for _, b := range banned {
				if path == b || (strings.HasSuffix(b, "/") && strings.HasPrefix(path, b)) {
					t.Errorf("%s imports %s: drill does no I/O to the cluster", file, path)
				}
			}
		}
	}
}
