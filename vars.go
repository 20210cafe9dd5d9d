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
)
