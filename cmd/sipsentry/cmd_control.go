package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/control"
	"github.com/sipsentry/sipsentry/internal/daemon"
	"github.com/sipsentry/sipsentry/report"
)

// ban, unban, allow, disallow, bans and allows share one path: through the
// daemon's control socket when it runs, so its engine decides and records;
// otherwise through the same engine code opened offline on the state DB and
// the kernel (openOffline), so that the next start agrees.

// openOffline opens the engine without a daemon; tests replace it.
var openOffline = openOfflineEngine

// controlRun is one control command's session.
type controlRun struct {
	cfg     *config.Config
	log     *slog.Logger
	out     io.Writer
	offline bool // true: no daemon was running; the engine was opened here
}

// viaControl runs op against the running daemon, or offline when none
// listens on control.socket. op must not print: it may run twice (a daemon
// that vanished between the attempts), and printing is the caller's after
// the single success.
func viaControl(cmd *cobra.Command, g *globalOptions, op func(context.Context, control.Handler, uint32) error) (*controlRun, error) {
	return viaControlMode(cmd, g, false, op)
}

// listViaControl is viaControl for a listing: offline it reads the state
// DB without opening the kernel.
func listViaControl(cmd *cobra.Command, g *globalOptions, op func(context.Context, control.Handler, uint32) error) (*controlRun, error) {
	return viaControlMode(cmd, g, true, op)
}

func viaControlMode(cmd *cobra.Command, g *globalOptions, listOnly bool, op func(context.Context, control.Handler, uint32) error) (*controlRun, error) {
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		return nil, err
	}
	r := &controlRun{cfg: cfg, log: humanLogger(cmd.ErrOrStderr(), slog.LevelWarn), out: cmd.OutOrStdout()}
	if g.logLevel != "" {
		r.log = g.logger(cfg)
	}
	ctx := cmd.Context()
	uid := uint32(os.Getuid())
	c := &control.Client{Path: cfg.Control.Socket}
	err = op(ctx, c, uid)
	if !errors.Is(err, control.ErrNoDaemon) {
		return r, controlError(err)
	}
	r.offline = true
	h, closeFn, err := openOffline(ctx, cfg, daemon.OfflineOptions{Logger: r.log, DryRunOut: r.out, ListOnly: listOnly})
	if err != nil {
		return r, fmt.Errorf("no daemon is running (nothing listens on %s), and opening the state DB and the firewall here failed: %w", cfg.Control.Socket, err)
	}
	opErr := op(ctx, h, uid)
	if err := closeFn(); err != nil && opErr == nil {
		opErr = fmt.Errorf("applied, but writing it out failed: %w", err)
	}
	return r, controlError(opErr)
}

// controlError maps control errors to exit codes: a bad request is a usage
// error (2), everything else (refused, not banned, not allowed, not
// authorized, failed) exits 1.
func controlError(err error) error {
	if errors.Is(err, control.ErrInvalid) {
		return usageError{err}
	}
	return err
}

// offlineNote tells the operator where the change went without a daemon.
func (r *controlRun) offlineNote() {
	if r.offline {
		fmt.Fprintln(r.out, "note: no daemon is running: applied to the state DB and the kernel directly; the next start keeps it")
	}
}

// usageArgs makes cobra's argument errors usage errors (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w (usage: sipsentry %s)", cmd.Name(), err, cmd.Use)}
		}
		return nil
	}
}

// untilText says when something ends, and how long is left.
func untilText(until, now time.Time) (string, string) {
	if until.IsZero() {
		return "never", "-"
	}
	left := until.Sub(now)
	if left <= 0 {
		return until.UTC().Format(time.RFC3339), "expired"
	}
	return until.UTC().Format(time.RFC3339), roundLeft(left).String()
}

// roundLeft rounds a time left to what a human reads.
func roundLeft(d time.Duration) time.Duration {
	if d >= time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

// esc makes daemon- or peer-supplied text safe for the terminal.
func esc(s string) string { return report.Escape(s) }

func uidText(uid *uint32) string {
	if uid == nil {
		return ""
	}
	return fmt.Sprintf("uid %d", *uid)
}

// openOfflineEngine opens the engine on the state DB and the kernel for one
// operation (daemon.OpenControlOffline); the returned function writes out
// what is pending and closes it.
func openOfflineEngine(ctx context.Context, cfg *config.Config, o daemon.OfflineOptions) (control.Handler, func() error, error) {
	return daemon.OpenControlOffline(ctx, cfg, o)
}
