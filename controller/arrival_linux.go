package controller

import (
	"golang.org/x/sys/unix"
	"net"
	"time"
)

// receivedAgo is how long ago the kernel last received data on c (or
// completed its handshake): TCP_INFO's tcpi_last_data_recv. 0 when it
// cannot tell.
func receivedAgo(c net.Conn) time.Duration {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var ago time.Duration
	raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			ago = time.Duration(info.Last_data_recv) * time.Millisecond
		}
	})
	return ago
}
