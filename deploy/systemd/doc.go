// Package systemd holds newbieha's systemd units (newbieha-gpu.service,
// newbieha-witness.service) and, in its test, the check that `make
// install` lays them out with the binaries and directories they name and
// that systemd-analyze accepts them. It has no code; see README.md.
package systemd
