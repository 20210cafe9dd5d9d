package routing

import (
	"syscall"
	"time"
)

// threadCPU returns the CPU time the calling OS thread has used, or 0
// when it cannot be read. Benchmarks lock their goroutine to its thread
// and report it per call: unlike wall time it does not count the time the
// thread waited for a core on a shared machine.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
