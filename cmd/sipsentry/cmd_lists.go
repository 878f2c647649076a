package main

import "github.com/spf13/cobra"

func newListsCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "lists",
		Short: "(lists: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("lists") },
	}
}
