package esl

import (
	"bytes"
	"context"
	"testing"
	"time"

	"callbridge/esl/freeswitch"
	"callbridge/esl/internal/wire"
	"callbridge/internal/wait"
)

// BenchmarkEventsPlainHangupComplete measures plain
// CHANNEL_HANGUP_COMPLETE events (a 9 kB capture) per second end to end:
// from a TCP server through the event connection's frame reader and
// parser to a subscriber.
func BenchmarkEventsPlainHangupComplete(b *testing.B) {
	f := newFakeFS(b)
	_, sub := connected(b, f, Config{SubscriptionBuffer: 1 << 20})
	ev := readFixture(b, "29-channel-hangup-complete-normal.plain.txt")
	const batch = 256
	chunk := bytes.Repeat(ev, batch)
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for sent := 0; sent < b.N; sent += batch {
			if b.N-sent < batch {
				f.inject(chunk[:len(ev)*(b.N-sent)])
			} else {
				f.inject(chunk)
			}
		}
	}()
	// Lost events fail the run instead of hanging it.
	ctx, advanced := wait.Progress(b, "hangup events")
	for i := 0; i < b.N; {
		e, err := sub.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		advanced()
		if e.Name == freeswitch.ChannelHangupComplete {
			i++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParseEvent measures the parser alone on the body of one plain
// CHANNEL_HANGUP_COMPLETE (9 kB, 223 headers), and a few lookups.
func BenchmarkParseEvent(b *testing.B) {
	frames := splitFrames(b, readFixture(b, "29-channel-hangup-complete-normal.plain.txt"))
	body := frames[0].Body
	var p wire.Parser
	now := time.Now().UTC()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := parsePlain(&p, "fs1", body, now)
		if err != nil {
			b.Fatal(err)
		}
		if e.Var("billmsec") == "" || e.UUID == "" {
			b.Fatal("missing headers")
		}
	}
}

// BenchmarkEventGet measures one header lookup on a parsed
// CHANNEL_HANGUP_COMPLETE.
func BenchmarkEventGet(b *testing.B) {
	frames := splitFrames(b, readFixture(b, "29-channel-hangup-complete-normal.plain.txt"))
	var p wire.Parser
	e, err := parsePlain(&p, "fs1", frames[0].Body, time.Now().UTC())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if e.Get("Caller-Destination-Number") == "" {
			b.Fatal("missing header")
		}
	}
}

// BenchmarkBgAPI measures sequential API round trips (bgapi, its reply,
// its BACKGROUND_JOB on the event connection) against a TCP server.
func BenchmarkBgAPI(b *testing.B) {
	f := newFakeFS(b)
	c, _ := connected(b, f, Config{})
	cmd, _ := freeswitch.UUIDExists(testUUID)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := c.API(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkBgAPIParallel is BenchmarkBgAPI with concurrent callers.
func BenchmarkBgAPIParallel(b *testing.B) {
	f := newFakeFS(b)
	c, _ := connected(b, f, Config{})
	cmd, _ := freeswitch.UUIDExists(testUUID)
	ctx := context.Background()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.API(ctx, cmd); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
