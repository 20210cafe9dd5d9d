//go:build realswitch

package realswitch

import (
	"net"
	"strconv"
	"testing"
)

// TestSippMediaPort: sipp instances get four-port media blocks of their
// own, below FreeSWITCH's RTP ranges and the ephemeral range, and a block
// another socket holds a port of is passed over (CI saw sipp fail with
// "Unable to bind video RTP socket ... Address already in use" when its
// media port was drawn at random like an RTP range).
func TestSippMediaPort(t *testing.T) {
	seen := map[int]bool{}
	for range 100 {
		p, err := sippMediaPort()
		if err != nil {
			t.Fatal(err)
		}
		if p < sippMediaLow || p+3 >= sippMediaLow+sippMediaSpan || p%4 != 0 {
			t.Fatalf("media block %d: want a multiple of 4 with its four ports in %d-%d", p, sippMediaLow, sippMediaLow+sippMediaSpan-1)
		}
		if seen[p] {
			t.Fatalf("media block %d handed out twice in 100", p)
		}
		seen[p] = true
	}
	if start, end := rtpRange(400); start < sippMediaLow+sippMediaSpan || end >= 32768 || start%2 != 0 {
		t.Fatalf("RTP range %d-%d: want an even start above sipp's media ports and below the ephemeral range", start, end)
	}

	// Hold the third port (sipp's video RTP) of the next block.
	next := sippMediaLow + 4*int((sippMediaNext.Load()+1)%(sippMediaSpan/4))
	pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(next+2)))
	if err != nil {
		t.Fatalf("hold %d: %v", next+2, err)
	}
	defer pc.Close()
	p, err := sippMediaPort()
	if err != nil {
		t.Fatal(err)
	}
	if p == next {
		t.Fatalf("block %d handed out though port %d is taken", p, next+2)
	}
}
