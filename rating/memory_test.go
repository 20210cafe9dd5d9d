package rating

import (
	"runtime"
	"strconv"
	"testing"
	"time"
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

// TestDeckBuilderMemory compiles 200,000 rates given one at a time, as a
// store streams them from its rows: everything allocated on the way (an
// upper bound of the peak) stays within a small multiple of what the
// deck holds, since no slice of every Rate is built beside the compiled
// deck. Holding both made a 4.1 million-rate deck take 2.3 GB of heap
// to load, 560 bytes a rate.
func TestDeckBuilderMemory(t *testing.T) {
	const n = 200_000
	stats := func() (live, total uint64) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, m.TotalAlloc
	}
	info := DeckInfo{ID: "d", AccountID: "acc", Name: "n", Currency: "EUR", TimeZone: "UTC", Precision: 4}
	live0, total0 := stats()
	b, err := NewDeckBuilder(info, time.UTC, n)
	if err != nil {
		t.Fatal(err)
	}
	var buf [16]byte
	for i := range n {
		r := Rate{Prefix: string(strconv.AppendInt(buf[:0], int64(100_000_000+i), 10)), PerMinute: 100,
			FirstIncrement: 60, NextIncrement: 60, Days: AllDays, Until: Midnight}
		if err := b.Add(&r); err != nil {
			t.Fatal(err)
		}
	}
	d, err := b.Deck()
	if err != nil {
		t.Fatal(err)
	}
	live1, total1 := stats()
	runtime.KeepAlive(d)
	held, allocated := (live1-live0)/n, (total1-total0)/n
	t.Logf("%d rates: the deck holds %d bytes a rate; building it allocated %d bytes a rate", n, held, allocated)
	if held > 320 {
		t.Errorf("the deck holds %d bytes a rate, want at most 320", held)
	}
	if allocated > 2*held {
		t.Errorf("building allocated %d bytes a rate, want at most twice what the deck holds (%d)", allocated, 2*held)
	}
}
