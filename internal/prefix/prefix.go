// Package prefix is the compact digit trie behind rating's decks and
// routing's plans: a longest-prefix match of digit strings, built once
// from sorted prefixes and then walked without allocation. Each prefix
// carries a run of its user's indexes; the package knows nothing of what
// they index. It performs no I/O.
package prefix

import (
	"math"
	"math/bits"
)

// MaxLen is the deepest a walk goes: a whole E.164 number.
const MaxLen = 15

// Trie is a ten-way digit trie laid out breadth first, so that a node's
// children are contiguous and a node is 16 bytes plus its Aux. Build it
// with New; its users may set the Lo, Count and Aux of its nodes, never
// add or remove one.
type Trie[A any] struct {
	// Nodes are the trie's nodes; Nodes[0] is the root, the empty prefix.
	Nodes []Node[A]
	// top maps the first topDigits digits of a number straight to its
	// node at that depth, skipping the first levels of a walk. An entry
	// with the high bit set is a node above that depth where the path
	// ends.
	top       []int32
	topDigits int
}

// Node is a trie node. Its payload is the run [Lo, Lo+Count) of its
// user's indexes, empty when Count is 0.
type Node[A any] struct {
	// Aux is its user's. It comes first: a zero-size Aux at the end
	// would be padded.
	Aux   A
	mask  uint16 // bit d set: a child for digit d
	Count uint16
	first int32 // the first child; the others follow in digit order
	Lo    int32
	// Up is the nearest ancestor with a payload, or -1.
	Up int32
}

// Group is one prefix and its payload run.
type Group struct {
	Prefix string
	Lo     int32
	Count  uint16
}

// New builds a trie of groups, whose prefixes must be distinct digit
// strings of at most MaxLen digits, in ascending order.
func New[A any](groups []Group) Trie[A] {
	type tnode struct {
		child [10]int32
		lo    int32
		count uint16
	}
	// The trie has a node for each digit of a prefix that the prefix
	// before it (they are sorted) does not share: allocating them at
	// once keeps a large trie from growing through copies of itself.
	size := 1
	for i, g := range groups {
		shared := 0
		if i > 0 {
			prev := groups[i-1].Prefix
			for shared < len(prev) && shared < len(g.Prefix) && prev[shared] == g.Prefix[shared] {
				shared++
			}
		}
		size += len(g.Prefix) - shared
	}
	tn := make([]tnode, 1, size)
	for _, g := range groups {
		n := int32(0)
		for k := 0; k < len(g.Prefix); k++ {
			c := g.Prefix[k] - '0'
			if tn[n].child[c] == 0 {
				tn = append(tn, tnode{})
				tn[n].child[c] = int32(len(tn) - 1)
			}
			n = tn[n].child[c]
		}
		tn[n].lo, tn[n].count = g.Lo, g.Count
	}
	t := Trie[A]{Nodes: make([]Node[A], len(tn))}
	queue := make([]int32, 1, len(tn))  // old indexes, in new order
	parent := make([]int32, 1, len(tn)) // new index of each one's parent
	parent[0] = -1
	for q := 0; q < len(queue); q++ {
		old := &tn[queue[q]]
		nd := &t.Nodes[q]
		nd.Lo, nd.Count, nd.Up = old.lo, old.count, -1
		if p := parent[q]; p >= 0 {
			nd.Up = t.Nodes[p].Up
			if t.Nodes[p].Count > 0 {
				nd.Up = p
			}
		}
		nd.first = int32(len(queue))
		for c, ch := range old.child {
			if ch != 0 {
				nd.mask |= 1 << c
				queue = append(queue, ch)
				parent = append(parent, int32(q))
			}
		}
	}
	// A top table of 10^k entries where 10^k is at most four entries
	// per node: 4 MB for 100,000 prefixes, nothing for a handful.
	for t.topDigits < 6 && pow10(t.topDigits+1) <= 4*len(t.Nodes) {
		t.topDigits++
	}
	if t.topDigits > 0 {
		t.top = make([]int32, pow10(t.topDigits))
		t.fillTop(0, 0, 0)
	}
	return t
}

// fillTop fills the top table under node nd at the given depth, whose
// digits so far make base.
func (t *Trie[A]) fillTop(nd int32, depth, base int) {
	if depth == t.topDigits {
		t.top[base] = nd
		return
	}
	n := &t.Nodes[nd]
	for c := range 10 {
		idx := base*10 + c
		if n.mask&(1<<c) != 0 {
			t.fillTop(n.first+int32(bits.OnesCount16(n.mask&(1<<c-1))), depth+1, idx)
			continue
		}
		span := pow10(t.topDigits - depth - 1)
		for i := idx * span; i < (idx+1)*span; i++ {
			t.top[i] = nd | math.MinInt32
		}
	}
}

// pow10 returns 10 to the n, n >= 0.
func pow10(n int) int {
	v := 1
	for range n {
		v *= 10
	}
	return v
}

// TopDigits returns how many leading digits the top table maps, 0 to 6.
func (t *Trie[A]) TopDigits() int { return t.topDigits }

// TopKey returns the number n's first TopDigits digits make, and false
// when there is no top table, n is shorter or one of them is not a digit.
func (t *Trie[A]) TopKey(n string) (int, bool) {
	k := t.topDigits
	if k == 0 || len(n) < k {
		return 0, false
	}
	v := 0
	for i := range k {
		c := n[i] - '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + int(c)
	}
	return v, true
}

// TopNode returns the node the digits of top key v lead to, or the node
// above where their path ends.
func (t *Trie[A]) TopNode(v int) int32 { return t.top[v] & math.MaxInt32 }

// Walk follows n's digits down the trie, starting from the top table
// when n is long enough, and returns the deepest node with a payload on
// the way, or -1. Shorter prefixes with a payload are reached from it by
// the nodes' Up links. It stops at the first character that is not a
// digit.
func (t *Trie[A]) Walk(n string) int32 {
	nd, i := int32(0), 0
	if v, ok := t.TopKey(n); ok {
		e := t.top[v]
		nd, i = e&math.MaxInt32, t.topDigits
		if e < 0 {
			i = len(n) // the path ends above the table's depth
		}
	}
	for ; i < len(n) && i < MaxLen; i++ {
		c := n[i] - '0'
		if c > 9 {
			break
		}
		m := t.Nodes[nd].mask
		if m&(1<<c) == 0 {
			break
		}
		nd = t.Nodes[nd].first + int32(bits.OnesCount16(m&(1<<c-1)))
	}
	if t.Nodes[nd].Count == 0 {
		return t.Nodes[nd].Up
	}
	return nd
}
