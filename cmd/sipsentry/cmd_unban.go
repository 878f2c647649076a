package main

import "github.com/spf13/cobra"

func newUnbanCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "unban",
		Short: "(unban: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("unban") },
	}
}
