package accounting

import "testing"

func TestCDRWantsCSV(t *testing.T) {
	tests := []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"text/csv", true},
		{"application/json", false},
		{"text/csv, application/json", true},
		{"application/json;q=0.9, text/csv", true},
		{"text/csv;q=0.1, */*", false},
		{"text/csv;q=0", false},
	}
	for _, tt := range tests {
		if got := cdrWantsCSV(tt.accept); got != tt.want {
			t.Errorf("cdrWantsCSV(%q) = %v, want %v", tt.accept, got, tt.want)
		}
	}
}
