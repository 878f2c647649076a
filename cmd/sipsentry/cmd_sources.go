package main

import "github.com/spf13/cobra"

func newSourcesCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "sources",
		Short: "(sources: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("sources") },
	}
}
