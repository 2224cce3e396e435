// Command gpu-probe runs newbieha's GPU health path once against the real
// NVIDIA driver: it reads every device's telemetry through NVML (the same
// gpu.Reader the agent uses), runs the gpu check with the given thresholds,
// and prints a table and a JSON document. It exits 0 whatever it finds,
// including when NVML is missing or the binary was built without cgo: the
// output says why. Only bad flags exit non-zero (2).
//
//	gpu-probe [--expected-devices N] [--max-temperature-c C] [--min-free-memory-mib M]
//	          [--xid-wait 5s] [--format both|table|json] [--timeout 20s] [--library PATH]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/newbieha/newbieha/health"
	"github.com/newbieha/newbieha/health/gpu"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Output is the JSON document gpu-probe prints.
type Output struct {
	// BuiltIn is false for a binary built without cgo.
	BuiltIn bool `json:"built_in"`
	// Available is true when NVML answered; Reason says why not.
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// Devices is the telemetry of every device.
	Devices []gpu.Device `json:"devices"`
	// XidEvents are the Xid events seen during --xid-wait; XidStatus says
	// whether they are watched at all.
	XidEvents []gpu.XidEvent `json:"xid_events"`
	XidStatus string         `json:"xid_status"`
	// Check is the gpu check's verdict on one sample.
	Check CheckOutput `json:"check"`
	// Thresholds are the gpu check's settings, defaults filled in.
	Thresholds Thresholds `json:"thresholds"`
	// At is when the probe ran.
	At time.Time `json:"at"`
}

// Thresholds is health.GPUConfig with the Xid window as text ("5m0s").
type Thresholds struct {
	health.GPUConfig
	XidWindow string `json:"xid_window"`
}

// CheckOutput is one sample of the gpu check.
type CheckOutput struct {
	// Verdict is "passing" or "failing" (what rise=1/fall=1 would make of
	// this sample).
	Verdict string `json:"verdict"`
	// Output is the check's output: a summary or the problems found.
	Output string `json:"output"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gpu-probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg     health.GPUConfig
		xidWait = fs.Duration("xid-wait", 0, "listen for Xid events this long before judging")
		format  = fs.String("format", "both", "output: both, table or json")
		timeout = fs.Duration("timeout", 20*time.Second, "bound on each NVML read")
		library = fs.String("library", "", "NVML library to load (default libnvidia-ml.so.1)")
	)
	fs.IntVar(&cfg.ExpectedDevices, "expected-devices", 0, "exact device count required (0: at least one)")
	fs.IntVar(&cfg.MaxTemperatureC, "max-temperature-c", 0, fmt.Sprintf("hottest allowed die temperature (0: %d, -1: off)", health.DefaultMaxTemperatureC))
	fs.Int64Var(&cfg.MinFreeMemoryMiB, "min-free-memory-mib", 0, "least free memory per device (0: off)")
	fs.Int64Var(&cfg.MaxECCUncorrected, "max-ecc-uncorrected", 0, "most volatile uncorrected ECC errors (-1: off)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *format != "both" && *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "gpu-probe: --format %q must be both, table or json\n", *format)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gpu-probe: unexpected arguments %q\n", fs.Args())
		return 2
	}

	reader := gpu.New(gpu.Options{LibraryPath: *library})
	defer func() {
		if err := reader.Close(); err != nil {
			fmt.Fprintf(stderr, "gpu-probe: %v\n", err)
		}
	}()
	out := probe(reader, cfg, *xidWait, *timeout)
	if *format != "json" {
		writeTable(stdout, out)
	}
	if *format != "table" {
		if *format == "both" {
			fmt.Fprintln(stdout)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "gpu-probe: encode: %v\n", err)
		}
	}
	return 0
}

// probe reads telemetry, waits for Xid events if asked, and runs the gpu
// check once through health's own prober.
func probe(src health.GPUProbe, cfg health.GPUConfig, xidWait, timeout time.Duration) Output {
	cc := health.CheckConfig{Name: "gpu", Kind: health.KindGPU, Interval: timeout + time.Second, Timeout: timeout, GPU: &cfg}
	cc = cc.WithDefaults()
	out := Output{
		BuiltIn:    gpu.BuiltIn,
		Devices:    []gpu.Device{},
		XidEvents:  []gpu.XidEvent{},
		Thresholds: Thresholds{GPUConfig: *cc.GPU, XidWindow: cc.GPU.XidWindow.String()},
		At:         time.Now().UTC(),
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	devs, err := src.Devices(ctx)
	cancel()
	if err != nil {
		out.Reason = err.Error()
	} else {
		out.Available, out.Devices = true, devs
		if xidWait > 0 {
			time.Sleep(xidWait) // collecting events is the point of the wait
		}
	}
	evs, xerr := src.XidEvents(time.Time{})
	out.XidEvents = append(out.XidEvents, evs...)
	switch {
	case xerr == nil:
		out.XidStatus = "watching"
	case errors.Is(xerr, gpu.ErrXidUnsupported):
		out.XidStatus = "not supported"
	default:
		out.XidStatus = xerr.Error()
	}

	p, perr := health.NewProber(cc, health.Deps{GPU: src})
	if perr != nil {
		out.Check = CheckOutput{Verdict: string(health.StatusFailing), Output: perr.Error()}
		return out
	}
	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	s := p.Probe(ctx)
	cancel()
	out.Check = CheckOutput{Verdict: string(health.StatusFailing), Output: s.Output}
	if s.OK {
		out.Check.Verdict = string(health.StatusPassing)
	}
	return out
}

// writeTable prints one line per device and the verdict.
func writeTable(w io.Writer, out Output) {
	if !out.Available {
		fmt.Fprintf(w, "NVML: not available: %s\n", out.Reason)
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "GPU\tNAME\tUUID\tMEM USED/TOTAL MiB\tUTIL\tTEMP\tPOWER\tECC CORR/UNCORR\tRETIRED\tREMAPPED CORR/UNCORR\tREMAP\tDRIVER")
		for _, d := range out.Devices {
			remap := "ok"
			switch {
			case d.RemapFailed:
				remap = "FAILED"
			case d.RemapPending:
				remap = "pending"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%d%%\t%d°C\t%.1f W\t%d/%d\t%s\t%d/%d\t%s\t%s\n",
				d.Index, d.Name, d.UUID, d.MemoryUsedBytes/gpu.MiB, d.MemoryTotalBytes/gpu.MiB,
				d.UtilizationGPU, d.TemperatureC, d.PowerW, d.ECCCorrected, d.ECCUncorrected,
				unsupportedOr(d, "retired_pages", fmt.Sprint(d.RetiredPages)),
				d.RemappedRowsCorrectable, d.RemappedRowsUncorrectable, remap, d.DriverVersion)
		}
		tw.Flush()
		for _, d := range out.Devices {
			if len(d.Unsupported) > 0 {
				fmt.Fprintf(w, "gpu%d: not supported: %s\n", d.Index, strings.Join(d.Unsupported, ", "))
			}
			if len(d.Errors) > 0 {
				fmt.Fprintf(w, "gpu%d: errors: %s\n", d.Index, strings.Join(d.Errors, "; "))
			}
		}
	}
	if out.Available {
		fmt.Fprintf(w, "Xid events: %s, %d seen\n", out.XidStatus, len(out.XidEvents))
		for _, e := range out.XidEvents {
			fmt.Fprintf(w, "  %s gpu%d %s Xid %d\n", e.Time.UTC().Format(time.RFC3339), e.Index, e.UUID, e.Xid)
		}
	}
	fmt.Fprintf(w, "gpu check: %s: %s\n", out.Check.Verdict, out.Check.Output)
}

// unsupportedOr returns "n/a" for a value the device does not support.
func unsupportedOr(d gpu.Device, field, value string) string {
	for _, u := range d.Unsupported {
		if u == field {
			return "n/a"
		}
	}
	return value
}
