package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/control"
)

func newUnbanCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "unban IP",
		Short: "End an address's ban everywhere: kernel, the daemon's memory and the state DB",
		Long: `End IP's ban (the engine's or a manual one) in the kernel, in the running
daemon's memory and in the state DB, so it is not back after a restart. Its
offence count stays, so a new ban escalates. The daemon bans it again if it
fails again.

Through the daemon's control socket when it runs; otherwise the same engine
code applies it to the state DB and the kernel directly.

Exit status: 0 unbanned, 1 not banned or failed, 2 bad usage.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := singleAddr(args[0])
			if err != nil {
				return err
			}
			r, err := viaControl(cmd, g, func(ctx context.Context, h control.Handler, uid uint32) error {
				return h.Unban(ctx, a, uid)
			})
			if errors.Is(err, control.ErrNotBanned) {
				return fmt.Errorf("unban %s: it is not banned (nothing changed; `sipsentry bans` lists the bans)", a)
			}
			if err != nil {
				return fmt.Errorf("unban %s: %w", a, err)
			}
			fmt.Fprintf(r.out, "unbanned %s: gone from the kernel's ban set and the state DB, so the next start does not restore it\n", a)
			r.offlineNote()
			return nil
		},
	}
}
