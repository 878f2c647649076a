package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/control"
)

func newDisallowCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "disallow CIDR",
		Short: "Remove a manual or learned allow entry everywhere",
		Long: `Remove CIDR's manual or learned allow entry from the kernel, the daemon's
memory and the state DB. An entry of firewall.allow is the config's: remove it
there (and reload) instead.

Through the daemon's control socket when it runs; otherwise the same engine
code applies it to the state DB and the kernel directly.

Exit status: 0 removed, 1 no such entry, refused or failed, 2 bad usage.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := control.ParsePrefix(args[0])
			if err != nil {
				return usageError{err}
			}
			r, err := viaControl(cmd, g, func(ctx context.Context, h control.Handler, uid uint32) error {
				return h.Disallow(ctx, p, uid)
			})
			if errors.Is(err, control.ErrNotAllowed) {
				return fmt.Errorf("disallow %s: it has no manual or learned allow entry (nothing changed; `sipsentry allows` lists them)", p)
			}
			if err != nil {
				return fmt.Errorf("disallow %s: %w", p, err)
			}
			fmt.Fprintf(r.out, "disallowed %s: removed from the kernel and the state DB\n", p)
			r.offlineNote()
			return nil
		},
	}
}
