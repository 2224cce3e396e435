// Package health observes the health of one node: it runs checks (an HTTP
// probe of the model, the model's end-to-end generate probe, the workload
// container's state, the GPUs through NVML, and operator scripts), turns
// their samples into statuses with rise/fall, and reduces those to a
// verdict: healthy when every required check is passing.
//
// The package is a leaf: it imports no other newbieha package except its own
// sub-package health/gpu (NVML telemetry). What it needs from the rest of
// the agent it declares itself, as small interfaces: ContainerInspector for
// the container state and GPUProbe for GPU telemetry. The cluster package
// consumes a Runner through its own interface in turn.
//
// Three layers:
//
//   - Configuration: Config and CheckConfig with WithDefaults and Validate,
//     whose errors name the field ("checks[1].timeout: 0s must be > 0").
//   - Policy, pure functions of their arguments: Step (rise/fall), Evaluate
//     (verdict and reason) and EvaluateGPU (thresholds).
//   - Running: a Runner with one goroutine per check, an injectable Clock,
//     a non-blocking Changes channel, Report, drill injection (Inject), and
//     a latency histogram per check (Latencies, Result.Latency).
//
// Rise/fall: a check starts unknown; it becomes passing after Rise
// consecutive successful samples and failing after Fall consecutive failed
// ones, from any other status. See docs/health.md for the defaults of each
// kind and why.
package health
