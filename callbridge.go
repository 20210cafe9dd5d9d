// Package callbridge holds the domain of the callbridge controller: phone
// numbers, accounts, callbacks, privacy-number bindings and call detail
// records, and the Error type every layer uses to say what went wrong.
//
// It imports only the standard library. It performs no I/O; adapters
// (postgres, esl) and the HTTP API (controller) depend on it, never the
// other way round.
package callbridge
