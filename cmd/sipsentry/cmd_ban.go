package main

import "github.com/spf13/cobra"

func newBanCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "ban",
		Short: "(ban: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("ban") },
	}
}
