package main

import "github.com/spf13/cobra"

func newDisallowCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "disallow",
		Short: "(disallow: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("disallow") },
	}
}
