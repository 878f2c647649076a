package main

import "github.com/spf13/cobra"

func newAllowCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "allow",
		Short: "(allow: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("allow") },
	}
}
