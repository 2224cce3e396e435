package keepalived

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse: any text either parses (and then converts or says why not)
// or fails with a *SyntaxError naming a line; nothing panics.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"seed-keepalived-master.conf", "seed-keepalived-backup.conf"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{unicastBackup, twoInstances, weights, noPreempt, everythingElse, "include x\n", "a {\n", "}\n", "\"x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 {
				t.Fatalf("error %v is not a *SyntaxError with a line", err)
			}
			return
		}
		r, err := Convert(cfg, Options{CheckScript: src, CheckScriptName: "x.sh"})
		if err != nil {
			return
		}
		out, err := r.YAML("fuzz.conf")
		if err != nil {
			t.Fatal(err)
		}
		// What converts is what config apply and the agent accept.
		parseOutput(t, out)
	})
}
