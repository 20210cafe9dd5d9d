package realswitch

import "fmt"

// Behaviour is what the carrier sipp does with a leg: the last three
// digits of the number dialled (testdata/sipp/carrier.xml).
type Behaviour string

const (
	Busy     Behaviour = "486" // 180, then 486 Busy Here
	Decline  Behaviour = "603" // 180, then 603 Decline
	NotFound Behaviour = "404" // 404 Not Found at once
	NoAnswer Behaviour = "180" // rings until FreeSWITCH cancels
	Answer   Behaviour = "200" // answers after 300 ms, plays RTP, waits for FreeSWITCH's BYE
)

// Hold answers like Answer and hangs up with a BYE after sec seconds
// (1..99).
func Hold(sec int) Behaviour {
	if sec < 1 || sec > 99 {
		panic(fmt.Sprintf("realswitch: Hold(%d): want 1..99 seconds", sec))
	}
	return Behaviour(fmt.Sprintf("2%02d", sec))
}

// RingRefuse rings sec seconds (1..99), then refuses the leg with 503
// Service Unavailable (FreeSWITCH: NORMAL_TEMPORARY_FAILURE), a carrier
// that gives up on the call late.
func RingRefuse(sec int) Behaviour {
	if sec < 1 || sec > 99 {
		panic(fmt.Sprintf("realswitch: RingRefuse(%d): want 1..99 seconds", sec))
	}
	return Behaviour(fmt.Sprintf("5%02d", sec))
}

// Number returns the E.164 number +4930 SSSS BBB: scenario s (0..9999,
// distinct per test so that parallel tests never share a number) and the
// carrier's behaviour b. The carrier sees it without the "+" (Digits).
func Number(s int, b Behaviour) string {
	return fmt.Sprintf("+4930%04d%s", s, b)
}

// Digits is a number as FreeSWITCH dials it and sipp sees it: no "+".
func Digits(e164 string) string {
	if len(e164) > 0 && e164[0] == '+' {
		return e164[1:]
	}
	return e164
}
