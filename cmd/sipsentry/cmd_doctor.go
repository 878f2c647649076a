package main

import "github.com/spf13/cobra"

func newDoctorCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "(doctor: not built yet)",
		RunE:  func(cmd *cobra.Command, args []string) error { return notBuilt("doctor") },
	}
}
