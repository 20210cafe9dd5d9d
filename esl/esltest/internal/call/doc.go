// Package call is the data of the simulated FreeSWITCH's calls: a channel
// (leg) with its variables, caller profile, states and hangup causes; the
// events FreeSWITCH fires and their text/event-plain and text/event-json
// serialisations; dial strings as originate and bridge read them; dialplan
// documents as mod_xml_curl returns them; and the Script of far-end
// behaviour.
//
// It holds no lock and starts no goroutine: the switch (package fswitch)
// owns the channels, guards them and drives them through a call.
package call
