// Package pki holds the cluster's trust material: the cluster CA, node
// certificates, join tokens that pin the CA (as kubeadm's discovery hash
// does), and the TLS configurations every connection between agents uses
// (mutual TLS 1.3 with the cluster CA).
//
// It is pure crypto and file I/O: no Raft, no network.
package pki
