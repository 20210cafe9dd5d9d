package callbridge

// IsUUID reports whether s is a UUID in its canonical text form
// (8-4-4-4-12 hexadecimal digits, either case), as callbridge's ids and
// FreeSWITCH's channel uuids are written. Ids that come from outside are
// checked with it before they reach SQL, an ESL command or XML.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
