package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/control"
)

type banOptions struct {
	forText string
	reason  string
}

func newBanCommand(g *globalOptions) *cobra.Command {
	o := &banOptions{}
	cmd := &cobra.Command{
		Use:   "ban IP",
		Short: "Ban an address now, as the engine would: recorded, in the kernel, kept across restarts",
		Long: `Ban IP for --for (default: engine.ban_time, escalated like the engine's own
bans by the address's earlier offences). A ban of an address that is banned
already never shortens it.

While the daemon runs the request goes through its control socket
(control.socket) and its engine decides: the never-ban rules apply (loopback,
the host's own addresses, the AMI peer, anything allow-listed are refused with
the reason), the ban is recorded in the state DB with origin "manual" and your
uid, reaches the kernel and shows in ` + "`sipsentry bans`" + `, ` + "`sources`" + `, ` + "`status`" + ` and the
metrics. Without a daemon the same engine code applies it to the state DB and
the kernel directly, so the next start agrees.

With firewall.mode = "monitor" the ban is recorded as a would-ban and nothing
is dropped until firewall.mode = "enforce".

Exit status: 0 banned, 1 refused or failed, 2 bad usage.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return runBan(cmd, o, g, args) },
	}
	f := cmd.Flags()
	f.StringVar(&o.forText, "for", "", "ban for `DURATION` (e.g. 1h, 7d; default engine.ban_time, escalated)")
	f.StringVar(&o.reason, "reason", "", "why, as `TEXT` recorded with the ban (at most 200 bytes)")
	return cmd
}

func runBan(cmd *cobra.Command, o *banOptions, g *globalOptions, args []string) error {
	a, err := singleAddr(args[0])
	if err != nil {
		return err
	}
	d := control.DefaultDuration
	if o.forText != "" {
		if d, err = parseFor(o.forText); err != nil {
			return err
		}
		if d <= 0 {
			// The ban's end is what the kernel entry, the state DB row and
			// the restore at the next start agree on.
			return usagef("ban: --for must be longer than 0 (e.g. 30d): a manual ban ends; `sipsentry unban` ends it sooner")
		}
	}
	if err := control.CheckText("--reason", o.reason); err != nil {
		return usageError{err}
	}
	var rec control.BanRecord
	r, err := viaControl(cmd, g, func(ctx context.Context, h control.Handler, uid uint32) error {
		var err error
		rec, err = h.Ban(ctx, a, d, o.reason, uid)
		return err
	})
	if errors.Is(err, control.ErrRefused) {
		return fmt.Errorf("ban %s refused: %v", a, err)
	}
	if err != nil {
		return fmt.Errorf("ban %s: %w", a, err)
	}
	how := "until unbanned"
	if !rec.Until.IsZero() {
		how = fmt.Sprintf("until %s (%s)", rec.Until.UTC().Format(time.RFC3339), roundLeft(time.Until(rec.Until)))
	}
	if rec.Monitor {
		fmt.Fprintf(r.out, "%s recorded as would-ban %s, offence %d: firewall.mode is \"monitor\", so nothing is dropped until firewall.mode = \"enforce\"\n",
			rec.Addr, how, rec.Offence)
	} else {
		fmt.Fprintf(r.out, "banned %s %s, offence %d: the kernel drops it from now on\n", rec.Addr, how, rec.Offence)
	}
	r.offlineNote()
	return nil
}
