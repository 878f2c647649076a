package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/firewall"
)

func newUnbanCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "unban IP",
		Short: "Remove an address from the ban set",
		Long: `Remove IP from the kernel's ban set (no error if it was not banned). The
running daemon may ban it again at its next failures.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := singleAddr(args[0])
			if err != nil {
				return err
			}
			s, err := openFirewall(cmd, g)
			if err != nil {
				return err
			}
			defer s.fw.Close()
			if err := s.fw.Delete(cmd.Context(), firewall.SetBan, netip.PrefixFrom(a, a.BitLen())); err != nil {
				return fwError(fmt.Errorf("unban %s: %w", a, err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unbanned %s\n", a)
			return nil
		},
	}
}
