//go:build !linux

package controller

import (
	"net"
	"time"
)

// receivedAgo cannot ask the kernel here: connections are timed from
// their accept.
func receivedAgo(net.Conn) time.Duration { return 0 }
