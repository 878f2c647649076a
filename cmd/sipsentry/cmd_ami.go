package main

import "github.com/spf13/cobra"

func newAMICommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "ami",
		Short: "(ami: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("ami") },
	}
}
