package callbridge_test

import (
	"testing"

	"callbridge"
)

func TestParseNumber(t *testing.T) {
	de := callbridge.NumberRules{CountryCode: "49", TrunkPrefix: "0", InternationalPrefix: "00"}
	for _, tc := range []struct {
		rules callbridge.NumberRules
		in    string
		want  string // "" means refused
	}{
		{callbridge.DefaultNumberRules(), "+49 30 1234567", "49301234567"},
		{callbridge.DefaultNumberRules(), "0049301234567", "49301234567"},
		{callbridge.DefaultNumberRules(), "49301234567", "49301234567"},
		{callbridge.DefaultNumberRules(), "+1 (555) 123-0001", "15551230001"},
		{callbridge.DefaultNumberRules(), "(555) 123 0001", "5551230001"},
		{callbridge.DefaultNumberRules(), " +15551230001 ", "15551230001"},
		{callbridge.DefaultNumberRules(), "030 1234567", ""}, // national form without rules
		{de, "030 1234567", "49301234567"},
		{de, "+49 30 1234567", "49301234567"},
		{callbridge.DefaultNumberRules(), "12345", ""},            // too short
		{callbridge.DefaultNumberRules(), "1234567890123456", ""}, // too long
		{callbridge.DefaultNumberRules(), "", ""},
		{callbridge.DefaultNumberRules(), "+", ""},
		{callbridge.DefaultNumberRules(), "++15551230001", ""},
		{callbridge.DefaultNumberRules(), "15551230001\r\nbgapi hupall", ""},
		{callbridge.DefaultNumberRules(), "1555123{x=y}", ""},
		{callbridge.DefaultNumberRules(), "1555123,0001", ""},
		{callbridge.DefaultNumberRules(), "1555123&park()", ""},
		{callbridge.DefaultNumberRules(), "sip:1555@evil", ""},
		{callbridge.DefaultNumberRules(), "1555123|0001", ""},
		{callbridge.DefaultNumberRules(), "1555'1230001", ""},
		{callbridge.DefaultNumberRules(), `1555\1230001`, ""},
		{callbridge.DefaultNumberRules(), "١٥٥٥١٢٣٠٠٠١", ""}, // Arabic-Indic digits
		{callbridge.DefaultNumberRules(), "１５５５１２３０００１", ""}, // full-width digits
		{callbridge.DefaultNumberRules(), "15551230001\x00", ""},
		{callbridge.DefaultNumberRules(), "-15551230001", ""},
		{callbridge.DefaultNumberRules(), "05551230001", ""}, // E.164 never starts with 0
	} {
		got, err := tc.rules.Parse(tc.in)
		if tc.want == "" {
			if err == nil || callbridge.ErrorCode(err) != callbridge.EINVALID {
				t.Errorf("Parse(%q) = %q, %v; want EINVALID", tc.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"+49 30 1234567", "0049301234567", "1555\r\n", "{}[],|^&' \\", "(555) 123-0001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := callbridge.ParseNumber(s)
		if err != nil {
			return
		}
		if verr := n.Validate(); verr != nil {
			t.Fatalf("ParseNumber(%q) = %q, which fails Validate: %v", s, n, verr)
		}
		for i := 0; i < len(n); i++ {
			if n[i] < '0' || n[i] > '9' {
				t.Fatalf("ParseNumber(%q) = %q holds a non-digit", s, n)
			}
		}
	})
}

func TestIsUUID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"6d1e8f0c-2a3b-4c5d-8e9f-0a1b2c3d4e5f", true},
		{"6D1E8F0C-2A3B-4C5D-8E9F-0A1B2C3D4E5F", true},
		{"6d1e8f0c2a3b4c5d8e9f0a1b2c3d4e5f", false},
		{"6d1e8f0c-2a3b-4c5d-8e9f-0a1b2c3d4e5", false},
		{"6d1e8f0c-2a3b-4c5d-8e9f-0a1b2c3d4e5g", false},
		{"6d1e8f0c-2a3b-4c5d-8e9f-0a1b2c3d4e5f\n", false},
		{"' OR 1=1 --                         ", false},
		{"", false},
	} {
		if got := callbridge.IsUUID(tc.in); got != tc.want {
			t.Errorf("IsUUID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
