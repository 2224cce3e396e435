package health

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps health a leaf: besides the standard library, its
// non-test files may import only health/gpu, and go-nvml appears only in
// health/gpu/nvml_adapter.go (the cgo file).
func TestImports(t *testing.T) {
	const module = "github.com/newbieha/newbieha/"
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("gpu/*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range append(files, more...) {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case path == module+"health/gpu":
			case strings.HasPrefix(path, module):
				t.Errorf("%s imports %s: health is a leaf", file, path)
			case strings.HasPrefix(path, "github.com/NVIDIA/go-nvml"):
				if file != filepath.Join("gpu", "nvml_adapter.go") {
					t.Errorf("%s imports %s: only gpu/nvml_adapter.go may", file, path)
				}
			case strings.Contains(strings.SplitN(path, "/", 2)[0], "."):
				t.Errorf("%s imports %s: health uses the standard library only", file, path)
			}
		}
	}
}
