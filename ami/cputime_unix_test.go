//go:build unix

package ami_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user+system) this process has used. On a
// shared machine it measures the cost of a block of work independently of
// how much of a core the scheduler gave us.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
