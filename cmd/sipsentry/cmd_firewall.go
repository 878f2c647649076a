package main

import "github.com/spf13/cobra"

func newFirewallCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "firewall",
		Short: "(firewall: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("firewall") },
	}
}
