package cluster

import (
	"crypto/x509"
	"fmt"
	"net/http"

	"github.com/newbieha/newbieha/cluster/pki"
	"github.com/newbieha/newbieha/fsm"
)

// callerKind is who is calling the API, as far as authorisation goes
// (docs/security.md, "Who may call what").
type callerKind int

const (
	// callerNobody has no certificate, or one that names neither an
	// operator nor a current member (a removed node).
	callerNobody callerKind = iota
	// callerRoot is root on this member's local socket.
	callerRoot
	// callerOperator holds an operator certificate (`newbieha operator
	// cert`), or is a member acting for root on its own socket.
	callerOperator
	// callerPeer holds the node certificate of a current member, with the
	// role the member record names.
	callerPeer
)

// caller is the identity behind one request.
type caller struct {
	kind callerKind
	// name is the operator's name (root@NODE for the socket), or the
	// member's name.
	name string
	// role is a peer's member role.
	role fsm.Role
	// why says, for callerNobody, what the certificate lacked.
	why string
}

// operator reports whether the caller may take operator actions.
func (c caller) operator() bool { return c.kind == callerRoot || c.kind == callerOperator }

// String names the caller in logs and refusals.
func (c caller) String() string {
	switch c.kind {
	case callerRoot:
		return c.name + " (local socket)"
	case callerOperator:
		return "operator " + c.name
	case callerPeer:
		return fmt.Sprintf("node certificate of %s (role %s)", c.name, c.role)
	default:
		return c.why
	}
}

// identify says who sent r. local is true on the unix socket, which only
// root can open (its mode is 0600).
func (a *Agent) identify(r *http.Request, local bool) caller {
	if local {
		return caller{kind: callerRoot, name: "root@" + a.Name()}
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return caller{why: "no client certificate"}
	}
	return a.identifyCert(r.TLS.VerifiedChains[0][0])
}

// identifyCert classifies a certificate the CA signed (the TLS layer has
// checked the chain, its dates and the deny-list).
func (a *Agent) identifyCert(leaf *x509.Certificate) caller {
	name, role := leaf.Subject.CommonName, pki.Role(leaf)
	switch {
	case role == pki.RoleOperator:
		return caller{kind: callerOperator, name: name}
	case !pki.IsNodeRole(role):
		return caller{why: fmt.Sprintf("certificate %q names role %q, neither a member role nor operator", name, role)}
	}
	m, ok := a.node.fsm.Member(name)
	if !ok {
		return caller{why: fmt.Sprintf("certificate of %s names no current member", name)}
	}
	if string(m.Role) != role {
		return caller{why: fmt.Sprintf("certificate of %s names role %s, the member is %s", name, role, m.Role)}
	}
	if !m.Honours(pki.Serial(leaf)) {
		return caller{why: fmt.Sprintf("certificate %s of %s is not one the member record honours (withdrawn by a renewal, or from before a removal)", pki.Serial(leaf), name)}
	}
	return caller{kind: callerPeer, name: name, role: m.Role}
}

// callerName is the common name of a remote caller's certificate, or ""
// for the local socket and a caller without one.
func callerName(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}
