package main

import "github.com/spf13/cobra"

func newLookupCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "lookup",
		Short: "(lookup: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("lookup") },
	}
}
