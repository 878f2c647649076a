package engine

import (
	"context"
	"runtime"
	"sync"

	"github.com/sipsentry/sipsentry/state"
)

// writerNice is the CPU priority of the thread that runs the state
// writer's SQLite transactions. Under a flood they took 40 % of the
// daemon's CPU (bench/flood, perf: source rows, bans, the event log) on the
// same cores as the AMI dispatcher, whose queue then overflowed and dropped
// events. At nice 10 the kernel gives the dispatcher the CPU first; the
// writer catches up after the burst (its pending rows are capped:
// maxPendingEvents, maxPendingSrc), and a ban is in the kernel before it is
// in the DB either way. Only the transaction runs there: taking the rows
// (under the source table's lock) stays at normal priority, so a preempted
// low-priority thread never holds a lock the dispatcher waits for.
const writerNice = 10

// lowApplier runs Store.Apply on its low-priority thread while Run runs.
type lowApplier struct {
	// runningMu guards running; an apply holds it (read) until its job is
	// done, so the applier stops only after serving every job handed to it.
	runningMu sync.RWMutex
	running   bool
	jobs      chan applyJob
}

type applyJob struct {
	ctx  context.Context
	b    *state.Batch
	done chan error
}

func (a *lowApplier) init() { a.jobs = make(chan applyJob) }

// apply writes b: on the low-priority thread when it runs, else here.
func (e *Engine) apply(ctx context.Context, b *state.Batch) error {
	a := &e.applier
	a.runningMu.RLock()
	if !a.running {
		a.runningMu.RUnlock()
		return e.d.Store.Apply(ctx, b)
	}
	defer a.runningMu.RUnlock()
	j := applyJob{ctx: ctx, b: b, done: make(chan error, 1)}
	a.jobs <- j // served: the applier keeps serving until running is false
	return <-j.done
}

// runApplier serves apply on an OS thread of its own at writerNice until
// ctx ends.
func (e *Engine) runApplier(ctx context.Context) {
	a := &e.applier
	// Never unlocked: the thread ends with this goroutine, so its priority
	// never reaches other goroutines.
	runtime.LockOSThread()
	lowerThreadPriority(writerNice)
	a.runningMu.Lock()
	a.running = true
	a.runningMu.Unlock()
	serve := func(j applyJob) { j.done <- e.d.Store.Apply(j.ctx, j.b) }
	for {
		select {
		case j := <-a.jobs:
			serve(j)
		case <-ctx.Done():
			// Stop taking jobs only once no apply is waiting for one:
			// keep serving until running is false.
			off := make(chan struct{})
			go func() {
				a.runningMu.Lock()
				a.running = false
				a.runningMu.Unlock()
				close(off)
			}()
			for {
				select {
				case j := <-a.jobs:
					serve(j)
				case <-off:
					return
				}
			}
		}
	}
}
