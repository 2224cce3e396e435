package fsm

import "bytes"

// ActiveView returns the current assignment and whether its node is a GPU
// member, without copying the rest of the state (the lease reads it on
// every request).
func (f *FSM) ActiveView() (Assignment, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.state.Members[f.state.Active.Node]
	return f.state.Active, ok && m.Role == RoleGPU
}

// SettingsRaw returns a copy of the replicated settings document (JSON;
// nil before any were committed).
func (f *FSM) SettingsRaw() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return bytes.Clone(f.state.Settings)
}
