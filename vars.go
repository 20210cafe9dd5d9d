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
)
