// Package keepalived reads a Keepalived configuration (keepalived.conf) and
// turns its VRRP instance into newbieha cluster settings: the VIP, the
// vrrp_script as health checks, the MASTER node as the preferred node.
//
// Parse reads the real grammar (words, quoted strings, { } blocks, # and !
// comments) into a tree of statements and then into a Config; unknown
// keywords and blocks are kept, not errors, so that Convert can list them.
// Convert never drops anything silently: every setting it cannot carry over
// is a Note saying what to do instead. The package is pure (no files, no
// environment); `newbieha import keepalived` in cmd/newbieha reads the
// files and the compose service. docs/migration.md explains the mapping.
package keepalived
