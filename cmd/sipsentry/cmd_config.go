package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/config"
)

func newConfigCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the configuration file",
	}
	cmd.AddCommand(newConfigCheckCommand(g))
	return cmd
}

func newConfigCheckCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Parse and validate the configuration file",
		Long: `Parse and validate --config (default /etc/sipsentry/sipsentry.toml) exactly as
the daemon does at start: unknown keys, bad values and a file holding a secret
that group or others can read, a missing or empty secret_file, a firewall.allow
entry covering every address and a lock-out (enforce + drop with nothing
allowed) are errors naming file:line and the key, with the fix; every problem
of the file is listed at once. It is the same check ` + "`run`" + ` starts with.

Exit status: 0 when the file is good, 2 when it is not. The systemd unit runs
this as ExecStartPre, so a broken edit never replaces a running daemon.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigCheck(cmd, g)
		},
	}
}

func runConfigCheck(cmd *cobra.Command, g *globalOptions) error {
	// The very function `run` starts with: what passes here starts.
	c, err := config.LoadForRun(g.configPath, false)
	if err != nil {
		// Every problem with the file (missing, unreadable, invalid, too
		// open, a secret missing) is the admin's input: exit 2.
		return usageError{err}
	}
	for _, w := range c.Warnings { // deprecated but accepted settings
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (firewall.mode = %s, engine.geo_mode = %s)\n",
		c.Path, c.Firewall.Mode, c.Engine.GeoMode)
	return err
}
