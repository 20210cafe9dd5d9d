package pg

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"callbridge"
)

// EncodeCursor is the page cursor of a listing ordered by (at, id)
// descending: the last row's time and id, opaque to clients.
func EncodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + "/" + id))
}

// DecodeCursor returns the time and id of a cursor from EncodeCursor, or
// EINVALID on the cursor field for anything else.
func DecodeCursor(c string) (time.Time, string, error) {
	bad := callbridge.FieldError("cursor", "is not a cursor from a previous page")
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad
	}
	us, id, ok := strings.Cut(string(raw), "/")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || !callbridge.IsUUID(id) {
		return time.Time{}, "", bad
	}
	return time.UnixMicro(n).UTC(), id, nil
}
