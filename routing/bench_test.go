package routing

import (
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"callbridge"
	"callbridge/rating"
)

// benchPrefixes returns n distinct prefixes of 2 to 9 digits drawn from
// the seeded generator.
func benchPrefixes(rng *rand.Rand, n int) []string {
	seen := map[string]bool{}
	out := make([]string, 0, n)
	for len(out) < n {
		p := strconv.Itoa(1 + rng.IntN(9))
		for l := 2 + rng.IntN(8); len(p) < l; {
			p += strconv.Itoa(rng.IntN(10))
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

var benchGateways = []string{"carrier-a", "carrier-b", "carrier-c", "carrier-d", "carrier-e"}

// benchSetup builds a 100,000-prefix least_cost plan over 5 carriers,
// each with a 100,000-prefix buy deck of its own prefixes and prices (so
// every lookup walks six different tries), in a rating.Registry as the
// engine has them, and numbers to route under the plan's prefixes.
func benchSetup(tb testing.TB) (*Plan, *rating.Registry, []callbridge.Number) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	prefixes := benchPrefixes(rng, 100_000)
	gws := make([]Target, len(benchGateways))
	for i, g := range benchGateways {
		gws[i] = Target{Gateway: g}
	}
	routes := make([]Route, len(prefixes))
	for i, p := range prefixes {
		routes[i] = Route{Prefix: p, Strategy: LeastCost, Gateways: gws, Days: rating.AllDays, Until: rating.Midnight}
	}
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		tb.Fatal(err)
	}
	plan, err := NewPlan(PlanInfo{ID: "p", Name: "bench", TimeZone: "Europe/Berlin", Currency: "EUR"}, loc, routes)
	if err != nil {
		tb.Fatal(err)
	}
	var reg rating.Registry
	var decks []*rating.Deck
	for i, g := range benchGateways {
		drng := rand.New(rand.NewPCG(uint64(10+i), 7))
		rates := make([]rating.Rate, 0, 100_000)
		for _, p := range benchPrefixes(drng, 100_000) {
			rates = append(rates, rating.Rate{Prefix: p, PerMinute: int64(1000 + drng.IntN(500_000)), FirstIncrement: 60, NextIncrement: 60,
				Days: rating.AllDays, Until: rating.Midnight})
		}
		def := &rating.Rate{PerMinute: 400_000, FirstIncrement: 60, NextIncrement: 60}
		d, err := rating.NewDeck(rating.DeckInfo{ID: "deck-" + g, Gateway: g, Name: g, Currency: "EUR", TimeZone: "Europe/Berlin", Precision: 4, Default: def}, loc, rates)
		if err != nil {
			tb.Fatal(err)
		}
		decks = append(decks, d)
	}
	reg.Replace(decks, reg.Mark())
	defer runtime.GC() // the garbage of the build, not the benchmark's
	numbers := make([]callbridge.Number, 4096)
	for i := range numbers {
		p := prefixes[rng.IntN(len(prefixes))]
		for len(p) < 11 {
			p += strconv.Itoa(rng.IntN(10))
		}
		numbers[i] = callbridge.Number(p)
	}
	return plan, &reg, numbers
}

// BenchmarkResolve is route resolution with a 100,000-prefix least_cost
// plan over 5 carriers, each gateway priced from its own 100,000-prefix
// buy deck in a rating.Registry, through its Table, health read from a
// Gateways. Target: at most 1 µs and 0 allocations per call.
func BenchmarkResolve(b *testing.B) {
	plan, reg, numbers := benchSetup(b)
	// Health as the engine has it: the live view of every gateway.
	var health Gateways
	for _, g := range benchGateways {
		health.SetSofia(g, SofiaUp)
		health.SetLimits(g, Limits{MaxActive: 100, MaxCPS: 50})
	}
	src := Sources{Prices: reg, Health: &health}
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	table := NewTable(plan, reg, at)
	runtime.GC()
	var res Resolution
	kept := 0
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	cpu0 := threadCPU()
	n := 0
	for i := 0; b.Loop(); i++ {
		table.Resolve(&res, numbers[i&4095], at, src)
		kept += len(res.Attempts())
		n++
	}
	if cpu := threadCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
	}
	if kept == 0 {
		b.Fatal("no gateway was ever kept")
	}
}

// TestResolveLarge holds Plan.Resolve and Table.Resolve to no allocation
// per call, and the table of the benchmark's plan to the plan's answers.
func TestResolveLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds six 100,000-prefix tries")
	}
	plan, reg, numbers := benchSetup(t)
	src := Sources{Prices: reg, Health: HealthMap{}, Rand: rand.NewPCG(1, 2)}
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	table := NewTable(plan, reg, at)
	var res, want Resolution
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		plan.Resolve(&res, numbers[i&4095], at, src)
		i++
	}); n != 0 {
		t.Errorf("got %v allocations per Plan.Resolve, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		table.Resolve(&res, numbers[i&4095], at, src)
		i++
	}); n != 0 {
		t.Errorf("got %v allocations per Table.Resolve, want 0", n)
	}
	for _, n := range append(numbers, "4", "49", "12345", "1234567890123456789", "99999999999") {
		table.Resolve(&res, n, at, Sources{Prices: reg})
		plan.Resolve(&want, n, at, Sources{Prices: reg})
		res.touch = 0
		if !reflect.DeepEqual(res, want) {
			t.Fatalf("%s: table %s\nplan %s", n, summary(&res), summary(&want))
		}
	}
	if len(res.Attempts()) != DefaultMaxAttempts {
		t.Errorf("got %d attempts, want %d", len(res.Attempts()), DefaultMaxAttempts)
	}
}
