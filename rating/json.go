package rating

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends r as JSON, the encoding MarshalJSON returns, to b.
// It is written out by hand because a quote is mostly this encoding: the
// reflective encoder costs more than pricing the call.
func (r *Result) AppendJSON(b []byte) []byte {
	b = append(b, `{"flags":`...)
	b = r.Flags.appendJSON(b)
	b = appendField(b, "currency", r.Currency)
	b = appendField(b, "prefix", r.Prefix)
	b = appendField(b, "description", r.Description)
	b = appendField(b, "band", r.Band)
	b = appendInt(b, "duration_ms", r.DurationMS)
	b = appendInt(b, "billed_ms", r.BilledMS)
	b = appendInt(b, "first_increment", int64(r.FirstIncrement))
	b = appendInt(b, "next_increment", int64(r.NextIncrement))
	b = appendInt(b, "connect_fee_micros", r.ConnectFee)
	b = appendInt(b, "min_charge_micros", r.MinCharge)
	b = appendInt(b, "amount_micros", r.Amount)
	b = append(b, `,"parts":[`...)
	for i, p := range r.Parts() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"offset_ms":`...)
		b = strconv.AppendInt(b, p.OffsetMS, 10)
		b = appendInt(b, "duration_ms", p.DurationMS)
		b = appendInt(b, "billed_ms", p.BilledMS)
		b = appendInt(b, "increments", p.Increments)
		b = appendField(b, "prefix", p.Prefix)
		b = appendField(b, "description", p.Description)
		b = appendField(b, "band", p.Band)
		b = appendInt(b, "per_minute_micros", p.PerMinute)
		b = appendInt(b, "amount_micros", p.Amount)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// MarshalJSON writes the result with its parts.
func (r Result) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// appendJSON appends the flags as a list of names.
func (fs Flags) appendJSON(b []byte) []byte {
	b = append(b, '[')
	first := true
	for i, n := range flagNames {
		if fs&(1<<i) != 0 {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = AppendJSONString(b, n)
		}
	}
	return append(b, ']')
}

// MarshalJSON writes the flags as a list of names.
func (fs Flags) MarshalJSON() ([]byte, error) { return fs.appendJSON(nil), nil }

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return AppendJSONString(b, v)
}

func appendInt(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// AppendJSONString appends s as a JSON string exactly as encoding/json
// writes it (HTML characters escaped, invalid UTF-8 replaced).
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // the rare string that needs escaping
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
