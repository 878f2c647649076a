// Command sipsentry protects an Asterisk PBX: it reads security events over
// AMI, decides, and keeps the kernel's sets and rules. See `sipsentry help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, each with one meaning.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command ran and failed (AMI unreachable, kernel refused, a list rejected)
	exitUsage   = 2 // bad usage, bad config or bad input file: nothing was changed
)

// usageError marks errors caused by the user's input; they exit with exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

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
	var ue usageError
	if errors.As(err, &ue) || isFlagError(err) {
		os.Exit(exitUsage)
	}
	os.Exit(exitFailure)
}
