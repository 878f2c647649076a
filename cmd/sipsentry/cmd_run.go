package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/daemon"
)

// The daemon itself lives in internal/daemon; this file wires the flags, the
// config and the logger, and maps the daemon's configuration errors to exit 2.

type runOptions struct {
	replay     string
	downOnExit bool
}

func newRunCommand(g *globalOptions) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: read AMI security events, ban in the kernel, learn push servers",
		Long: `Run connects to Asterisk's AMI, puts sipsentry's sets and rules into the
kernel, restores unexpired bans and learned push servers, and then turns
security events into decisions until it receives SIGTERM or SIGINT.

SIGHUP re-reads the configuration file and the country lists. On exit the
firewall stays up, so bans keep protecting the PBX; --down-on-exit removes
sipsentry's rules and sets instead.

With --replay FILE the events come from a raw AMI capture (the server->client
byte stream, e.g. tcpdump/tshark output of port 5038) instead of a live
Asterisk; the daemon exits at its end. With firewall.backend = "dry-run" the
kernel is not touched and every operation it would make is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd.Context(), cmd, o, g)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.replay, "replay", "", "take events from a raw AMI capture `FILE` instead of a live Asterisk")
	f.BoolVar(&o.downOnExit, "down-on-exit", false, "remove sipsentry's firewall rules and sets on exit")
	return cmd
}

func runRun(ctx context.Context, cmd *cobra.Command, o runOptions, g *globalOptions) error {
	// The same check as `config check` (the unit's ExecStartPre).
	cfg, err := config.LoadForRun(g.configPath, o.replay != "")
	if err != nil {
		return usageError{err}
	}
	err = daemon.Run(ctx, cfg, daemon.Options{
		ConfigPath: g.configPath,
		Replay:     o.replay,
		DownOnExit: o.downOnExit,
		Out:        cmd.OutOrStdout(),
		Logger:     g.logger(cfg),
		Version:    versionString(),
	})
	if errors.Is(err, daemon.ErrConfig) {
		return usageError{err}
	}
	return err
}
