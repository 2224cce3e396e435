package cluster

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/newbieha/newbieha/cluster/pki"
)

// OperatorCertRequest asks a member for an operator certificate (root on
// the member's socket only). The caller keeps the private key: it sends
// the public key (PEM) and gets the certificate back.
type OperatorCertRequest struct {
	Name      string   `json:"name"`
	TTL       Duration `json:"ttl"` // 0: pki.DefaultOperatorTTL
	PublicKey string   `json:"public_key"`
}

// OperatorCertResponse carries the signed certificate, the CA to verify
// members with, and the members' API addresses to call.
type OperatorCertResponse struct {
	Cert    string    `json:"cert"`
	CACert  string    `json:"ca_cert"`
	Expires time.Time `json:"expires"`
	Serial  string    `json:"serial"`
	Members []string  `json:"members"`
}

// handleOperatorCert signs an operator certificate. Only root on this
// member's socket may ask, and only a member that holds the CA key (a GPU
// node) can sign: an operator certificate cannot mint another, so a stolen
// one dies with its TTL.
func (o *operatorAPI) handleOperatorCert(w http.ResponseWriter, r *http.Request) {
	a := o.a
	if c := callerOf(r); c.kind != callerRoot {
		refuse(a, w, r, c, "is for root on a member's local socket only")
		return
	}
	var req OperatorCertRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := pki.ValidateOperatorName(req.Name); err != nil {
		writeError(w, fmt.Errorf("%w: name: %w", ErrBadRequest, err))
		return
	}
	ttl := time.Duration(req.TTL)
	if ttl == 0 {
		ttl = pki.DefaultOperatorTTL
	}
	if ttl < time.Minute || ttl > pki.MaxOperatorTTL {
		writeError(w, fmt.Errorf("%w: ttl %v must be between 1m and %v", ErrBadRequest, ttl, pki.MaxOperatorTTL))
		return
	}
	pub, err := pki.ParsePublicKey([]byte(req.PublicKey))
	if err != nil {
		writeError(w, fmt.Errorf("%w: public_key: %w", ErrBadRequest, err))
		return
	}
	if a.bundle.CA.Key == nil {
		writeError(w, fmt.Errorf("%w: %s cannot sign operator certificates; run this on a GPU node", pki.ErrNoCAKey, a.Name()))
		return
	}
	cert, err := a.bundle.CA.IssueOperator(req.Name, ttl, pub)
	if err != nil {
		writeError(w, err)
		return
	}
	o.audit(r, fmt.Sprintf("operator cert for %s, valid %v, serial %x", req.Name, ttl, cert.SerialNumber))
	writeJSON(w, http.StatusOK, OperatorCertResponse{
		Cert:    string(pki.EncodeCert(cert)),
		CACert:  string(pki.EncodeCert(a.bundle.CA.Cert)),
		Expires: cert.NotAfter,
		Serial:  fmt.Sprintf("%x", cert.SerialNumber),
		Members: memberAPIAddrs(a.node.fsm.State(), ""),
	})
}

// rootCert is the operator certificate a GPU member signs for root@NODE to
// carry a request from its local socket to the leader or to another member
// (operatorAPI.forward).
type rootCert struct {
	mu      sync.Mutex
	client  *http.Client
	expires time.Time
}

// rootCertTTL is how long the certificate root@NODE is signed for; it is
// renewed when less than half is left.
const rootCertTTL = 15 * time.Minute

// rootClient returns an HTTPS client that presents root@NODE's operator
// certificate. A witness holds no CA key and cannot sign one: root on the
// witness acts on the witness only.
func (a *Agent) rootClient() (*http.Client, error) {
	rc := &a.root
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.client != nil && time.Until(rc.expires) > rootCertTTL/2 {
		return rc.client, nil
	}
	if a.bundle.CA.Key == nil {
		return nil, fmt.Errorf("%w: %s holds no CA key, so it cannot carry root's request to another member; run the command on a GPU node, or remotely with an operator certificate (--server, --cert-dir)", ErrForbidden, a.Name())
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	cert, err := a.bundle.CA.IssueOperator("root@"+a.Name(), rootCertTTL, &key.PublicKey)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     pki.OperatorClientConfig(a.bundle.CA.Cert, cert, key),
		TLSHandshakeTimeout: a.cfg.PeerTimeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	if rc.client != nil {
		rc.client.CloseIdleConnections()
	}
	rc.client = &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	rc.expires = cert.NotAfter
	return rc.client, nil
}
