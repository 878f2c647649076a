package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/control"
)

type allowOptions struct {
	forText string
	comment string
}

func newAllowCommand(g *globalOptions) *cobra.Command {
	o := &allowOptions{}
	cmd := &cobra.Command{
		Use:   "allow CIDR",
		Short: "Let a network reach the protected ports, ahead of bans and countries",
		Long: `Add CIDR (or a single address) to the allow set, which is matched before the
ban set and the countries, and record it in the state DB with your uid, so it
survives restarts and the engine never bans inside it. --for makes the entry
expire; without it the entry stays until ` + "`sipsentry disallow`" + `. For a permanent
entry kept in the config, use firewall.allow.

Through the daemon's control socket when it runs; otherwise the same engine
code applies it to the state DB and the kernel directly.

Exit status: 0 allowed, 1 refused or failed, 2 bad usage.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := control.ParsePrefix(args[0])
			if err != nil {
				return usageError{err}
			}
			var d time.Duration
			if o.forText != "" {
				if d, err = parseFor(o.forText); err != nil {
					return err
				}
			}
			if err := control.CheckText("--comment", o.comment); err != nil {
				return usageError{err}
			}
			var rec control.AllowRecord
			r, err := viaControl(cmd, g, func(ctx context.Context, h control.Handler, uid uint32) error {
				var err error
				rec, err = h.Allow(ctx, p, d, o.comment, uid)
				return err
			})
			if err != nil {
				return fmt.Errorf("allow %s: %w", p, err)
			}
			how := "until disallowed"
			if !rec.Until.IsZero() {
				how = fmt.Sprintf("until %s (%s)", rec.Until.UTC().Format(time.RFC3339), roundLeft(time.Until(rec.Until)))
			}
			fmt.Fprintf(r.out, "allowed %s %s: matched before bans and countries\n", rec.Prefix, how)
			if r.cfg.Firewall.Mode == "monitor" {
				fmt.Fprintln(r.out, "note: firewall.mode is \"monitor\": nothing is dropped anyway")
			}
			r.offlineNote()
			return nil
		},
	}
	cmd.Flags().StringVar(&o.forText, "for", "", "allow for `DURATION` (e.g. 12h, 30d; default: no timeout)")
	cmd.Flags().StringVar(&o.comment, "comment", "", "why, as `TEXT` recorded with the entry (at most 200 bytes)")
	return cmd
}
