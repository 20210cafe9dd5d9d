// Package freeswitchconf holds the FreeSWITCH 1.10 configuration that
// callbridge deploys next to the controller, and the tests that check it.
//
// The configuration itself is the XML in this directory; see README.md. The
// package has no Go API: its tests emulate FreeSWITCH's configuration
// pre-processor (X-PRE-PROCESS include, set and env-set, $${var} expansion)
// and check the assembled document. It will not start or talk to a
// FreeSWITCH; no FreeSWITCH runs where these tests run.
package freeswitchconf
