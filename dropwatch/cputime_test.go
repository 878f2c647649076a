package dropwatch

import (
	"syscall"
	"time"
)

// processCPU is this process's CPU time (user+system): the cost of a block
// of work, independent of the share of a core the scheduler gave us.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
