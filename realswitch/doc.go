// Package realswitch runs callbridge against a real FreeSWITCH: the
// harness of the real-switch suite (`make test-freeswitch`) and of any
// other suite that needs the real thing.
//
// An Env is one FreeSWITCH 1.10 (FREESWITCH_DIR, default
// ../shared/freeswitch; never skipped: absent, it fails saying how to get
// one) run with the repository's freeswitch-conf/ unchanged, only FS_*
// environment variables set (free loopback ports, its own random even RTP
// range, the dialplan URL of the controller, the carrier gateway's proxy);
// a `callbridge serve` subprocess on a private PostgreSQL database
// (postgres/pgtest); and a carrier: sipp (Debian sip-tester, 3.6) playing
// testdata/sipp/carrier.xml behind the "carrier" gateway, which answers
// every leg FreeSWITCH dials as the dialled number's last three digits say
// (Number, Behaviour: busy, decline, not found, no answer, answer and hold).
// Phones calling in are sipp too (Dial, testdata/sipp/phone.xml). Every
// sipp traces each SIP message it sent and received with its time (Calls,
// Call.Talk); Switch.Hangup returns FreeSWITCH's CHANNEL_HANGUP_COMPLETE
// of a channel (cause, q850, billmsec, RTP counters). Nothing but loopback
// is ever used.
//
// The suite itself is realswitch/*_test.go, behind the build tag
// realswitch so that `go test ./...` never runs it. Its TestMain builds the
// binary once and starts one shared Env; scenarios run in parallel on it.
//
// To add a scenario:
//
//  1. Write a test in realswitch/ (or in your own package) with
//     //go:build realswitch, starting with t.Parallel().
//  2. Take a scenario number no other test uses (grep realswitch.Number)
//     and build its numbers with Number(n, behaviour): the carrier reads
//     the behaviour from the last digits, and the distinct number tells
//     your calls apart in sipp's trace and the CDRs.
//  3. Create an account (env.NewAccount, or Admin.CreateAccount), drive the
//     public API with its Client, and wait with WaitCallback.
//  4. Assert what callbridge recorded (the callback, its legs and history,
//     Admin.AccountCDRs), what sipp saw (env.Carrier.WaitCall(ctx,
//     Digits(number), Call.Ended)) and what FreeSWITCH reported
//     (env.Switch.Hangup(ctx, leg uuid)).
//
// Several carriers: Options.Carriers starts one more sipp per carrier,
// each on its own port behind a gateway of its own (SwitchConfig.Gateways
// writes the gateway files as freeswitch-conf/README.md says to add one),
// reachable as Env.Carriers[name]; CarrierConfig.Refuse makes a carrier
// answer every INVITE 503 (or 408), a carrier that cannot carry calls.
// TestCarriers starts a Switch and carriers of its own the same way,
// without a controller.
//
// A scenario that kills, stops or restarts the controller or FreeSWITCH,
// or changes their settings (FS_MAX_SESSIONS...), must not share the Env:
// it starts its own with Start(Options{Binary: binary, ...}) and closes
// it. REALSWITCH_KEEP=1 keeps the state directories (FreeSWITCH's log,
// sipp's traces) for a post-mortem.
package realswitch
