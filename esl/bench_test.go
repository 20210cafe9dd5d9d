package esl

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkEventParse measures plain CHANNEL_HANGUP_COMPLETE events (a
// 9 kB capture) per second from a TCP server through the guard,
// go-eventsocket and conversion to a subscriber.
func BenchmarkEventParse(b *testing.B) {
	f := newFakeFS(b)
	_, sub := connected(b, f, Config{SubscriptionBuffer: 1 << 20})
	ev := readFixture(b, "29-channel-hangup-complete-normal.plain.txt")
	const batch = 256
	chunk := bytes.Repeat(ev, batch)
	b.SetBytes(int64(len(ev)))
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
	ctx := context.Background()
	for i := 0; i < b.N; {
		e, err := sub.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if e.Name == ChannelHangupComplete {
			i++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBgAPI measures sequential API round trips (bgapi, its reply,
// its BACKGROUND_JOB on the event connection) against a TCP server.
func BenchmarkBgAPI(b *testing.B) {
	f := newFakeFS(b)
	c, _ := connected(b, f, Config{})
	cmd, _ := UUIDExists(testUUID)
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
	cmd, _ := UUIDExists(testUUID)
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
