package main

import "github.com/spf13/cobra"

func newManCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "man",
		Short:  "(man: not built yet)",
		Hidden: true,
		RunE:   func(cmd *cobra.Command, args []string) error { return notBuilt("man") },
	}
}
