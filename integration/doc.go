// Package integration holds tests across real processes, network
// namespaces and containers. They use the built binaries only and run with
// `go test -tags integration ./integration/...` as root (see Makefile).
package integration
