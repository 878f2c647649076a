// Package cliexit holds the exit codes every sipsentry binary uses, each
// with one meaning, and the error type that carries the usage code across
// package boundaries. It never prints and never exits by itself.
package cliexit

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, each with one meaning.
const (
	OK      = 0 // success
	Failure = 1 // the command ran and failed (AMI unreachable, kernel refused, a list rejected)
	Usage   = 2 // bad usage, bad config or bad input file: nothing was changed
)

// UsageError marks an error caused by the user's input (a flag, an
// argument, the config, an input file): it exits with Usage.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// ExitCode makes UsageError recognisable through any wrapping.
func (e UsageError) ExitCode() int { return Usage }

// Usagef formats a UsageError.
func Usagef(format string, args ...any) error {
	return UsageError{Err: fmt.Errorf(format, args...)}
}

// Code is the exit code for err: an error (anywhere in its chain) with an
// ExitCode method decides; cobra's own parsing errors are usage errors;
// every other error is a failure.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	if IsCobraUsage(err) {
		return Usage
	}
	return Failure
}

// cobraUsagePrefixes are the messages cobra returns, unwrapped and untyped,
// for an unknown command, a bad argument count or a missing or conflicting
// flag. Matching their text is the only way to tell them apart; flag
// parsing errors themselves arrive typed through SetFlagErrorFunc.
var cobraUsagePrefixes = []string{
	"unknown command", "unknown flag", "unknown shorthand flag",
	"accepts ", "requires at least", "requires at most", "requires exactly", "accepts between",
	"required flag(s)", "if any flags in the group", "at least one of the flags in the group",
}

// IsCobraUsage reports whether err is one of cobra's argument or flag errors.
func IsCobraUsage(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, p := range cobraUsagePrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// TypeArgs wraps the argument validator of cmd and of every command below
// it so that a wrong argument count is a UsageError (exit 2) without
// matching message text. Call it once the command tree is complete.
func TypeArgs(cmd *cobra.Command) {
	if cmd.HasSubCommands() && !cmd.Runnable() {
		// A group such as `lists`: cobra would print its help and exit 0
		// for `lists bogus`; an unknown subcommand is a usage error.
		cmd.Args = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return Usagef("unknown command %q for %q (see %s --help)", args[0], c.CommandPath(), c.CommandPath())
			}
			return nil
		}
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	if v := cmd.Args; v != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := v(c, args); err != nil {
				return UsageError{Err: err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		TypeArgs(sub)
	}
}
