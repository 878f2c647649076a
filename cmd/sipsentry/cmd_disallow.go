package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/config"
)

func newDisallowCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "disallow CIDR",
		Short: "Remove a network from the allow set",
		Long: `Remove CIDR from the kernel's allow set (no error if absent). An entry that
comes from firewall.allow in the config returns at the next firewall up.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := config.ParsePrefix(args[0])
			if err != nil {
				return usageError{err}
			}
			s, err := openFirewall(cmd, g)
			if err != nil {
				return err
			}
			defer s.fw.Close()
			if err := s.fw.Delete(cmd.Context(), firewall.SetAllow, p); err != nil {
				return fwError(fmt.Errorf("disallow %s: %w", p, err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disallowed %s\n", p)
			for _, a := range s.cfg.Firewall.Allow {
				if a.Prefix == p {
					fmt.Fprintf(cmd.OutOrStdout(), "note: %s is in firewall.allow and returns at the next firewall up\n", p)
				}
			}
			return nil
		},
	}
}
