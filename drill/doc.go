// Package drill holds the pure half of runbook-driven drills: the runbook
// format, its validation, the plan (targets resolved against a view of the
// cluster), the preconditions, and the evaluation of what a run observed
// into a report. It does no I/O to the cluster; the runner that injects
// faults, probes the VIP and watches ARP lives elsewhere and calls in here.
//
// The flow, as the runner uses it:
//
//	rb, err := drill.ParseFile(path)            // strict YAML, errors name line and key
//	plan, errs := drill.NewPlan(rb, view)        // every target resolved to a node
//	fails := drill.CheckPreconditions(view, rb.Preconditions)
//	fmt.Print(plan)                              // --dry-run
//	... run, recording drill.Observations ...
//	rep := drill.Evaluate(plan, obs)
//	rep.Text(prev), rep.Markdown(prev), rep.JSON(prev)
//
// Faults run in the background for their duration while the next steps
// run (AWS FIS's bounded actions); waits and expects run in order. Role
// targets ("active", "standby", "witness") are resolved once, when the
// plan is made, and keep meaning the same node for the whole run.
//
// docs/drills.md describes the format and the shipped runbooks in
// docs/runbooks/; it also says why each figure is defined as it is.
package drill
