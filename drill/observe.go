package drill

import "time"

// EventKind says what an Event records.
type EventKind string

// The event kinds a runner records.
const (
	// EventStepStart: steps[Step] started (a fault: injection begins).
	EventStepStart EventKind = "step-start"
	// EventStepEnd: steps[Step] ended; OK is false when a fault could not
	// be injected, a wait's condition did not hold in time, or an expect
	// did not hold. Detail says what was seen.
	EventStepEnd EventKind = "step-end"
	// EventFaultUndone: the fault of steps[Step] was undone (or expired);
	// OK is false when the undo failed, with Detail.
	EventFaultUndone EventKind = "fault-undone"
	// EventHolder: the VIP's holder became Node ("" for nobody), as the
	// cluster's status reports it.
	EventHolder EventKind = "holder"
	// EventHistory: a change of active node was committed, to Node, with
	// Reason ("holder-lost:node1").
	EventHistory EventKind = "history"
	// EventAbort: the run was aborted; Detail says why.
	EventAbort EventKind = "abort"
	// EventNote: anything else worth a line in the timeline (Detail).
	EventNote EventKind = "note"
)

// Event is one thing that happened during a run.
type Event struct {
	At   time.Time `json:"at"`
	Kind EventKind `json:"kind"`
	// Step is the runbook step index for step and fault events.
	Step   int    `json:"step"`
	Node   string `json:"node,omitempty"`
	Reason string `json:"reason,omitempty"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// ProbeResult is one steady-state request through the VIP.
type ProbeResult struct {
	// At is when the request was sent.
	At      time.Time     `json:"at"`
	Latency time.Duration `json:"latency"`
	// Status is the HTTP status; 0 when there was no answer.
	Status int `json:"status"`
	// Err is why there was no answer (timeout, refused); "" otherwise.
	Err string `json:"err,omitempty"`
	// Node is the node that answered, when the service says (the stub
	// model server does); "" when unknown.
	Node string `json:"node,omitempty"`
}

// ARPRound is one ARP probe for the VIP and the MACs that answered it.
type ARPRound struct {
	At   time.Time `json:"at"`
	MACs []string  `json:"macs"`
}

// Observations is everything a runner recorded during one run: the input
// to Evaluate. Events, probes and ARP rounds need not be sorted.
type Observations struct {
	Start  time.Time     `json:"start"`
	End    time.Time     `json:"end"`
	Events []Event       `json:"events"`
	Probes []ProbeResult `json:"probes"`
	ARP    []ARPRound    `json:"arp,omitempty"`
	// Aborted says why the run was aborted; "" when it was not.
	Aborted string `json:"aborted,omitempty"`
	// Operator is who ran the drill, for the report and history.
	Operator string `json:"operator,omitempty"`
}
