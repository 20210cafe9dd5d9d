//go:build !linux

package routing

import "time"

// threadCPU is not available here; benchmarks report no CPU time.
func threadCPU() time.Duration { return 0 }
