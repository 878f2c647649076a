package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/firewall"
)

type banOptions struct {
	forText string
	reason  string
}

func newBanCommand(g *globalOptions) *cobra.Command {
	o := &banOptions{}
	cmd := &cobra.Command{
		Use:   "ban IP",
		Short: "Ban an address in the kernel now and cut its open flows",
		Long: `Add IP to the ban set (for --for, default engine.ban_time; "0" bans until
unbanned or the set is rebuilt) and delete its conntrack entries, so even an
established UDP flow is dropped at its next packet.

The ban lives in the kernel only: the daemon's state does not record it, so a
daemon restart that reloads the ban set from its state drops it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runBan(cmd.Context(), cmd, o, g, args) },
	}
	f := cmd.Flags()
	f.StringVar(&o.forText, "for", "", "ban `DURATION` (e.g. 1h, 7d; 0 = no timeout; default engine.ban_time)")
	f.StringVar(&o.reason, "reason", "", "why, stored as the entry's comment")
	return cmd
}

func runBan(ctx context.Context, cmd *cobra.Command, o *banOptions, g *globalOptions, args []string) error {
	a, err := singleAddr(args[0])
	if err != nil {
		return err
	}
	s, err := openFirewall(cmd, g)
	if err != nil {
		return err
	}
	defer s.fw.Close()
	d := s.cfg.Engine.BanTime.D()
	if o.forText != "" {
		if d, err = parseFor(o.forText); err != nil {
			return err
		}
	}
	comment := "manual " + time.Now().UTC().Format(time.RFC3339)
	if o.reason != "" {
		comment += ": " + o.reason
	}
	p := netip.PrefixFrom(a, a.BitLen())
	if err := s.fw.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: p, Timeout: d, Comment: comment}); err != nil {
		return fwError(fmt.Errorf("ban %s: %w", a, err))
	}
	if err := s.fw.DropFlows(ctx, a); err != nil {
		return fmt.Errorf("ban %s: banned, but its open flows were not cut: %w", a, err)
	}
	out := cmd.OutOrStdout()
	how := "until unbanned"
	if d > 0 {
		how = "for " + d.String()
	}
	fmt.Fprintf(out, "banned %s %s; its conntrack flows were deleted\n", a, how)
	if allow, ok := inStaticAllow(s.cfg.Firewall, a); ok {
		fmt.Fprintf(out, "note: %s is inside firewall.allow %s, which is matched first: the ban has no effect until it leaves that list\n", a, allow)
	}
	return nil
}
