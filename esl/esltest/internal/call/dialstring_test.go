package call

import (
	"slices"
	"testing"
)

// TestSplitOutsideQuotes: a sequential bridge's "|" list is split as
// switch_separate_string splits it: not inside single quotes, not where
// escaped.
func TestSplitOutsideQuotes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"sofia/gateway/a/1", []string{"sofia/gateway/a/1"}},
		{"[x=1]sofia/gateway/a/1|[x=2]sofia/gateway/b/1", []string{"[x=1]sofia/gateway/a/1", "[x=2]sofia/gateway/b/1"}},
		{"[h='a|b']sofia/gateway/a/1|sofia/gateway/b/1", []string{"[h='a|b']sofia/gateway/a/1", "sofia/gateway/b/1"}},
		{`sofia/gateway/a/1\|2|error/USER_BUSY`, []string{`sofia/gateway/a/1\|2`, "error/USER_BUSY"}},
	} {
		if got := SplitOutsideQuotes(tt.in, '|'); !slices.Equal(got, tt.want) {
			t.Errorf("splitOutsideQuotes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
