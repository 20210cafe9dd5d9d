package prefix

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"unsafe"
)

// build returns the trie of prefixes (sorted here), each with a payload
// of one index: its position in the sorted list.
func build(prefixes []string) (Trie[struct{}], []string) {
	prefixes = slices.Clone(prefixes)
	slices.Sort(prefixes)
	groups := make([]Group, len(prefixes))
	for i, p := range prefixes {
		groups[i] = Group{Prefix: p, Lo: int32(i), Count: 1}
	}
	return New[struct{}](groups), prefixes
}

// match returns the longest of prefixes that starts n (within MaxLen
// digits), or "" when none does, the way Walk should find it.
func match(prefixes []string, n string) (string, bool) {
	best, ok := "", false
	for _, p := range prefixes {
		if len(p) <= MaxLen && len(p) <= len(n) && n[:len(p)] == p && (!ok || len(p) > len(best)) {
			best, ok = p, true
		}
	}
	return best, ok
}

func TestWalk(t *testing.T) {
	tr, sorted := build([]string{"1", "12", "123", "4", "49", "5678", "999999999999999"})
	for _, tt := range []struct {
		n    string
		want string // "": no payload on the path
	}{
		{"", ""},
		{"2", ""},
		{"1", "1"},
		{"13", "1"},
		{"1299", "12"},
		{"123456", "123"},
		{"49", "49"},
		{"491234", "49"},
		{"567", ""},
		{"56789", "5678"},
		{"12a3", "12"},
		{"+123", ""},
		{"9999999999999999", "999999999999999"},
	} {
		t.Run(tt.n, func(t *testing.T) {
			nd := tr.Walk(tt.n)
			got := ""
			if nd >= 0 {
				got = sorted[tr.Nodes[nd].Lo]
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWalkLarge holds a trie big enough for a deep top table to a brute
// force search, on numbers that end inside and above the table's depth.
func TestWalkLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	prefixes := make([]string, 5000) // 1 to 8 digits, not starting with 0
	for i := range prefixes {
		prefixes[i] = strconv.Itoa(10_000_000 + rng.IntN(90_000_000))[:1+rng.IntN(8)]
	}
	slices.Sort(prefixes)
	tr, sorted := build(slices.Compact(prefixes))
	if tr.TopDigits() < 3 {
		t.Fatalf("got %d top digits for %d nodes, want at least 3", tr.TopDigits(), len(tr.Nodes))
	}
	for range 20000 {
		n := ""
		for l := rng.IntN(13); len(n) < l; {
			n += strconv.Itoa(rng.IntN(10))
		}
		want, ok := match(sorted, n)
		nd := tr.Walk(n)
		switch {
		case !ok && nd != -1:
			t.Fatalf("%s: got %q, want no payload", n, sorted[tr.Nodes[nd].Lo])
		case ok && (nd < 0 || sorted[tr.Nodes[nd].Lo] != want):
			t.Fatalf("%s: got node %d, want %q", n, nd, want)
		}
		// The Up links lead to every shorter prefix on the path.
		for ; nd >= 0; nd = tr.Nodes[nd].Up {
			if p := sorted[tr.Nodes[nd].Lo]; n[:len(p)] != p {
				t.Fatalf("%s: an Up link leads to %q", n, p)
			}
		}
	}
}

// TestNodeSize keeps a node without Aux at 16 bytes: a 100,000-prefix
// deck has about 300,000 of them.
func TestNodeSize(t *testing.T) {
	if got := unsafe.Sizeof(Node[struct{}]{}); got != 16 {
		t.Errorf("got %d bytes, want 16", got)
	}
	if got := unsafe.Sizeof(Node[int32]{}); got != 20 {
		t.Errorf("got %d bytes with an int32 Aux, want 20", got)
	}
}
