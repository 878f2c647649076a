package engine

import "golang.org/x/sys/unix"

// lowerThreadPriority sets the calling thread's nice value (on Linux a
// thread's own); best effort: without the privilege the writer runs at the
// daemon's priority, as before.
func lowerThreadPriority(nice int) { _ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice) }
