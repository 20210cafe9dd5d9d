package callbridge_test

import (
	"testing"

	"callbridge"
)

func TestTextProblem(t *testing.T) {
	for _, tc := range []struct {
		in        string
		multiline bool
		ok        bool
	}{
		{"Berlin Mitte", false, true},
		{"Zürich 東京 🙂", false, true},
		{"", false, true},
		{"a\x00b", false, false},
		{"a\x00b", true, false},
		{"a\x07b", true, false},
		{"a\x7fb", false, false},
		{"a\xffb", false, false},
		{"a\uFFFDb", false, false},
		{"line\nline", false, false},
		{"line\r\n\tline", true, true},
	} {
		if got := callbridge.TextProblem(tc.in, tc.multiline) == ""; got != tc.ok {
			t.Errorf("TextProblem(%q, %v): ok %v, want %v", tc.in, tc.multiline, got, tc.ok)
		}
	}
	if err := callbridge.CheckText("area", "a\x00"); callbridge.ErrorField(err) != "area" || callbridge.ErrorCode(err) != callbridge.EINVALID {
		t.Errorf("CheckText: got %v, want invalid naming area", err)
	}
}
