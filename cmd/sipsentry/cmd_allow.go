package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/config"
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
ban set and the countries. --for makes the entry expire; without it the entry
stays until ` + "`sipsentry disallow`" + ` or a firewall down. For a permanent entry that
survives everything, put it in firewall.allow in the config.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := config.ParsePrefix(args[0])
			if err != nil {
				return usageError{err}
			}
			var e firewall.Entry
			e.Prefix = p
			if o.forText != "" {
				if e.Timeout, err = parseFor(o.forText); err != nil {
					return err
				}
			}
			e.Comment = "manual"
			if o.comment != "" {
				e.Comment += ": " + o.comment
			}
			s, err := openFirewall(cmd, g)
			if err != nil {
				return err
			}
			defer s.fw.Close()
			if err := s.fw.Add(cmd.Context(), firewall.SetAllow, e); err != nil {
				return fwError(fmt.Errorf("allow %s: %w", p, err))
			}
			how := "until disallowed"
			if e.Timeout > 0 {
				how = "for " + e.Timeout.String()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "allowed %s %s\n", p, how)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.forText, "for", "", "allow for `DURATION` (e.g. 12h, 30d; default: no timeout)")
	cmd.Flags().StringVar(&o.comment, "comment", "", "why, stored with the entry")
	return cmd
}
