// Package cluster is callbridge's scale-out suite (`make test-cluster`):
// Kamailio (Debian's kamailio 5.6, with the repository's
// kamailio/kamailio.cfg) in front of two real FreeSWITCH nodes, two
// `callbridge serve` sharing one PostgreSQL, sipp as carrier and phones, all
// on loopback. It proves that calls spread over the nodes, that a node
// killed mid-run loses no new call and no CDR, that callbacks keep
// completing on the node that survives, that a binding made on one
// controller routes on a node another controller serves, and that a
// drained node gets no new call while its calls finish.
//
// The tests carry the build tag "cluster"; they use the real-switch harness
// (package realswitch) and fail, never skip, when FreeSWITCH or Kamailio is
// missing.
package cluster
