package main

import "github.com/spf13/cobra"

func newRunCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "(run: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("run") },
	}
}
