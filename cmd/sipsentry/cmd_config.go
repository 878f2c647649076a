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
that group or others can read are errors naming file:line and the key.

Exit status: 0 when the file is good, 2 when it is not. The systemd unit runs
this as ExecStartPre, so a broken edit never replaces a running daemon.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigCheck(cmd, g)
		},
	}
}

func runConfigCheck(cmd *cobra.Command, g *globalOptions) error {
	c, err := config.Load(g.configPath)
	if err != nil {
		// Every problem with the file (missing, unreadable, invalid, too
		// open) is the admin's input: exit 2.
		return usageError{err}
	}
	if _, err := c.AMISecret(); err != nil {
		return usageError{err}
	}
	if _, err := c.ARIPassword(); err != nil {
		return usageError{err}
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (firewall.mode = %s, engine.geo_mode = %s)\n",
		c.Path, c.Firewall.Mode, c.Engine.GeoMode)
	return err
}
