package callbridge

// Channel variables callbridge sets on FreeSWITCH channels, so that events
// and CDRs can be attributed to an account, a callback or a binding. They
// come back in CHANNEL_* events as "variable_<name>".
const (
	VarAccount    = "callbridge_account"     // account id
	VarCallbackID = "callbridge_callback_id" // callback id (callback legs)
	VarLeg        = "callbridge_leg"         // "a" or "b" for callbacks; "inbound"/"outbound" for bindings
	VarBindingID  = "callbridge_binding_id"  // binding id (privacy-number calls)
	VarX          = "callbridge_x"           // the virtual number X of a binding call
	VarDirection  = "callbridge_direction"   // "a_to_b", "b_to_a" or "any_to_b"
	VarMaxMS      = "callbridge_max_ms"      // maximum duration in milliseconds granted to the call
	// VarGateway names the carrier gateway a route plan sent an outbound
	// attempt through (a valid gateway name, never caller input).
	VarGateway = "callbridge_gateway"
	// VarAttempt is the attempt's number among a leg's attempts through a
	// route plan's gateways: 1 for the first gateway tried, 2 for the
	// first failover... Legs not routed by a plan do not carry it.
	VarAttempt = "callbridge_attempt"
	// VarRouter names the controller that routed an attempt leg through
	// a route plan's gateway (RouterName of its carrier.Gateways holder):
	// for a binding call the one that answered the dialplan request, for
	// a callback leg the one that placed it. Every controller follows
	// every node, but only that one holds the leg's gateway slot, counts
	// its failover and counts the attempt in the gateway metrics; the
	// others feed only their breakers from the leg's CDR.
	VarRouter = "callbridge_router"
)

// maxRouter is the longest VarRouter value.
const maxRouter = 128

// RouterName turns name (a controller's carrier.Gateways holder, which
// carries its configured owner name) into a VarRouter value: every byte
// outside [A-Za-z0-9._-] becomes '_' and the result is cut to 128 bytes,
// so it can be placed as is in a dial string and in an originate
// command's variables (whose values the ESL builder limits to
// [A-Za-z0-9_.@+-]). An empty name gives "callbridge".
func RouterName(name string) string {
	if name == "" {
		name = "callbridge"
	}
	if len(name) > maxRouter {
		name = name[len(name)-maxRouter:] // the holder's random suffix is at the end
	}
	b := []byte(name)
	for i, c := range b {
		if !routerByte(c) || c == ':' || c == '/' {
			b[i] = '_'
		}
	}
	return string(b)
}

// ValidateRouter checks a VarRouter value: 1 to 128 bytes from
// [A-Za-z0-9._:/-]. RouterName makes none with ':' or '/' any more; a
// leg that a controller from before named that way still validates.
func ValidateRouter(s string) error {
	if len(s) < 1 || len(s) > maxRouter {
		return FieldError("router", "must have 1 to %d characters", maxRouter)
	}
	for i := 0; i < len(s); i++ {
		if !routerByte(s[i]) {
			return FieldError("router", "may contain only letters, digits, '.', '_', ':', '/' and '-'")
		}
	}
	return nil
}

func routerByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
}
