package routing

import (
	"math"
	"math/bits"

	"callbridge"
)

// trie is a compact ten-way digit trie, laid out as rating's deck lays
// out its own: built once from sorted prefixes, each with a run [lo,
// lo+count) of payload indexes, then read without allocation.
type trie struct {
	nodes []node // nodes[0] is the root, the empty prefix
	// top maps the first topDigits digits of a number to its node at
	// that depth; an entry with the high bit set is a node above that
	// depth where the path ends.
	top       []int32
	topDigits int
}

// node is a trie node. Its children are contiguous from first, one per
// set bit of mask (bit d for digit d), in digit order. Its payload is
// [lo, lo+count); up is the nearest ancestor with a payload, or -1. aux
// is its user's.
type node struct {
	mask  uint16
	first int32
	lo    int32
	count int32
	up    int32
	aux   int32
}

// group is one prefix and its payload run.
type group struct {
	prefix    string
	lo, count int32
}

// newTrie builds a trie of groups, whose prefixes must be distinct digit
// strings in ascending order.
func newTrie(groups []group) trie {
	type tnode struct {
		child     [10]int32
		lo, count int32
	}
	tn := []tnode{{}}
	for _, g := range groups {
		n := int32(0)
		for k := 0; k < len(g.prefix); k++ {
			c := g.prefix[k] - '0'
			if tn[n].child[c] == 0 {
				tn = append(tn, tnode{})
				tn[n].child[c] = int32(len(tn) - 1)
			}
			n = tn[n].child[c]
		}
		tn[n].lo, tn[n].count = g.lo, g.count
	}
	t := trie{nodes: make([]node, len(tn))}
	queue := make([]int32, 1, len(tn))  // old indexes, in new order
	parent := make([]int32, 1, len(tn)) // new index of each one's parent
	parent[0] = -1
	for q := 0; q < len(queue); q++ {
		old := &tn[queue[q]]
		nd := &t.nodes[q]
		nd.lo, nd.count, nd.up = old.lo, old.count, -1
		if par := parent[q]; par >= 0 {
			nd.up = t.nodes[par].up
			if t.nodes[par].count > 0 {
				nd.up = par
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
	// A top table of 10^k entries, at most four per node.
	for t.topDigits < 6 && pow10(t.topDigits+1) <= 4*len(t.nodes) {
		t.topDigits++
	}
	if t.topDigits > 0 {
		t.top = make([]int32, pow10(t.topDigits))
		t.fillTop(0, 0, 0)
	}
	return t
}

func (t *trie) fillTop(nd int32, depth, base int) {
	if depth == t.topDigits {
		t.top[base] = nd
		return
	}
	n := t.nodes[nd]
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

func pow10(n int) int {
	v := 1
	for range n {
		v *= 10
	}
	return v
}

// walk follows n's digits down the trie and returns the deepest node
// with a payload on the way, or -1.
func (t *trie) walk(n callbridge.Number) int32 {
	nd, i := int32(0), 0
	if k := t.topDigits; k > 0 && len(n) >= k {
		v := 0
		for ; i < k; i++ {
			c := n[i] - '0'
			if c > 9 {
				break
			}
			v = v*10 + int(c)
		}
		if i == k {
			e := t.top[v]
			if e < 0 {
				i = len(n)
			}
			nd = e & math.MaxInt32
		} else {
			i = 0
		}
	}
	for ; i < len(n) && i < MaxPrefixLen; i++ {
		c := n[i] - '0'
		if c > 9 {
			break
		}
		m := t.nodes[nd].mask
		if m&(1<<c) == 0 {
			break
		}
		nd = t.nodes[nd].first + int32(bits.OnesCount16(m&(1<<c-1)))
	}
	if t.nodes[nd].count == 0 {
		return t.nodes[nd].up
	}
	return nd
}
