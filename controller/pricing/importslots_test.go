package pricing

import (
	"testing"

	"callbridge"
)

// TestImportSlots: an owner holds at most its share of the process's
// import slots, the process at most its total; a release frees one slot,
// once.
func TestImportSlots(t *testing.T) {
	slots := NewImportSlots(2, 3)
	var releases []func()
	for _, owner := range []string{"a", "a", "b"} {
		r, err := slots.acquire(owner)
		if err != nil {
			t.Fatalf("acquire %s: %v", owner, err)
		}
		releases = append(releases, r)
	}
	if _, err := slots.acquire("a"); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Errorf("third for a: got %v, want rate limited", err)
	}
	if _, err := slots.acquire("c"); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Errorf("fourth in the process: got %v, want rate limited", err)
	}
	releases[0]()
	releases[0]() // releasing twice frees one slot only
	if r, err := slots.acquire("c"); err != nil {
		t.Errorf("after a release: %v", err)
	} else {
		r()
	}
	if _, err := slots.acquire("a"); err != nil {
		t.Errorf("a after its release: %v", err)
	}
	if _, err := slots.acquire("d"); callbridge.ErrorCode(err) != callbridge.ERATELIMIT {
		t.Errorf("double release freed two slots: got %v", err)
	}
}
