// Command sipsentry protects an Asterisk PBX: it reads security events over
// AMI, decides, and keeps the kernel's sets and rules. See `sipsentry help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sipsentry/sipsentry/cmd/internal/cliexit"
)

// Exit codes, each with one meaning (cmd/internal/cliexit documents them;
// sipsentry-report uses the same).
const (
	exitOK      = cliexit.OK      // success
	exitFailure = cliexit.Failure // the command ran and failed (AMI unreachable, kernel refused, a list rejected)
	exitUsage   = cliexit.Usage   // bad usage, bad config or bad input file: nothing was changed
)

// usageError marks errors caused by the user's input; they exit with exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// ExitCode makes usageError recognisable by cliexit.Code through any wrapping.
func (e usageError) ExitCode() int { return exitUsage }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand()
	err := root.ExecuteContext(ctx)
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintf(os.Stderr, "sipsentry: %v\n", err)
	os.Exit(exitCode(err))
}

// exitCode maps an error to the process exit status: usage errors of every
// command (and cobra's argument and flag errors) exit 2, other failures 1.
func exitCode(err error) int { return cliexit.Code(err) }
