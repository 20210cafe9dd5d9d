package rating

import (
	"runtime"
	"testing"
)

// TestDeckMemory bounds what a compiled 100,000-prefix deck costs to
// hold: every controller keeps every deck in memory, and during a reload
// two versions of one.
func TestDeckMemory(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	d := newDeck(t, DeckInfo{Precision: 4}, benchRates(100_000, false)...)
	size := heap() - before
	runtime.KeepAlive(d)
	t.Logf("a 100,000-prefix deck holds %.1f MB (%d bytes a rate)", float64(size)/1e6, size/100_000)
	if size > 32<<20 {
		t.Errorf("a 100,000-prefix deck holds %d bytes, want at most 32 MiB", size)
	}
}
