package drill

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseRunbook feeds the parser arbitrary bytes. It must never panic;
// every error must be an Errors of FieldErrors; a runbook it accepts must
// plan, print, evaluate and render without panicking.
func FuzzParseRunbook(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(crashRunbook))
	f.Add([]byte("version: 1\nsteps: [{fault: partition, from: [a, *x]}]\n"))
	f.Add([]byte("version: 1\nname: &a x\ndescription: *a\n"))
	f.Add([]byte("{version: 1, steps: [[[]]], expectations: [{}]}"))
	files, _ := filepath.Glob("../docs/runbooks/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rb, err := Parse(data)
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("error %T %v is not a non-empty Errors", err, err)
			}
			for _, e := range es {
				if e.Msg == "" {
					t.Fatalf("empty message in %v", err)
				}
			}
			return
		}
		if rb.TimeLimit <= 0 || rb.TimeLimit > MaxTimeLimit || len(rb.Steps) == 0 || len(rb.Expectations) == 0 {
			t.Fatalf("accepted an invalid runbook: %+v", rb)
		}
		for _, st := range rb.Steps {
			if st.Kind == StepFault && st.Fault.Duration > MaxFaultDuration {
				t.Fatalf("fault longer than the bound: %+v", st.Fault)
			}
		}
		p, errs := NewPlan(rb, sampleView())
		if errs != nil {
			for _, e := range errs {
				if !strings.Contains(e.Error(), ": ") {
					t.Fatalf("plan error without a key: %v", e)
				}
			}
			return
		}
		_ = p.String()
		rep := Evaluate(p, timeline(1460*msec, 1580*msec))
		_ = rep.Text(rep)
		_ = rep.Markdown(rep)
		if _, err := rep.JSON(rep); err != nil {
			t.Fatal(err)
		}
	})
}
