package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/control"
)

type listOptions struct{ json bool }

func newBansCommand(g *globalOptions) *cobra.Command {
	var o listOptions
	cmd := &cobra.Command{
		Use:   "bans",
		Short: "List the active bans: address, country, origin, offence, until, time left, reason",
		Long: `List the bans in force, as the engine holds them: the address, its country
(by the country lists), who decided (engine, or manual with the operator's
uid), the offence count, when the ban ends and how long is left, and why.
With firewall.mode = "monitor" they are would-bans: recorded, not dropped.

From the running daemon through its control socket; without a daemon, from
the state DB.

--json prints one array of objects (addr, country, reason, origin, offence,
created, until, uid, monitor, allowed, time_left_seconds; until is absent for
a ban without timeout; monitor marks a would-ban, allowed a ban held out of
the kernel because its address was allow-listed after it).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var bans []control.BanRecord
			now := time.Now()
			r, err := listViaControl(cmd, g, func(ctx context.Context, h control.Handler, _ uint32) error {
				bans = bans[:0] // a second attempt (offline) starts over
				return h.Bans(ctx, now, func(b control.BanRecord) error { bans = append(bans, b); return nil })
			})
			if err != nil {
				return fmt.Errorf("bans: %w", err)
			}
			slices.SortFunc(bans, func(a, b control.BanRecord) int { return a.Addr.Compare(b.Addr) })
			if o.json {
				return printBansJSON(r.out, bans, now)
			}
			printBans(r.out, bans, now)
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON array of objects")
	return cmd
}

// banJSON is a ban as `bans --json` prints it.
type banJSON struct {
	control.BanRecord
	Until           *time.Time `json:"until,omitempty"`
	TimeLeftSeconds *float64   `json:"time_left_seconds,omitempty"`
}

// untilJSON is an end and its time left as `--json` prints them: both nil
// for no end (a permanent allow).
func untilJSON(until, now time.Time) (*time.Time, *float64) {
	if until.IsZero() {
		return nil, nil
	}
	u := until.UTC()
	left := max(until.Sub(now), 0).Seconds()
	return &u, &left
}

func printBansJSON(w io.Writer, bans []control.BanRecord, now time.Time) error {
	out := make([]banJSON, 0, len(bans))
	for _, b := range bans {
		j := banJSON{BanRecord: b}
		j.Until, j.TimeLeftSeconds = untilJSON(b.Until, now)
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func printBans(w io.Writer, bans []control.BanRecord, now time.Time) {
	if len(bans) == 0 {
		fmt.Fprintln(w, "no active bans")
		return
	}
	monitor, allowed := 0, 0
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tCOUNTRY\tORIGIN\tOFFENCE\tUNTIL\tLEFT\tREASON")
	for _, b := range bans {
		until, left := untilText(b.Until, now)
		origin := esc(b.Origin)
		if b.UID != nil {
			origin += " (" + uidText(b.UID) + ")"
		}
		switch {
		case b.Monitor:
			origin += ", would-ban"
			monitor++
		case b.Allowed:
			origin += ", held: allowed"
			allowed++
		}
		country := esc(b.Country)
		if country == "" {
			country = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", b.Addr, country, origin, b.Offence, until, left, esc(b.Reason))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d active bans", len(bans))
	if monitor > 0 {
		fmt.Fprintf(w, "; %d are would-bans (firewall.mode = \"monitor\"): recorded, not dropped", monitor)
	}
	if allowed > 0 {
		fmt.Fprintf(w, "; %d are held out of the kernel because their address is allow-listed now", allowed)
	}
	fmt.Fprintln(w)
}

// evidenceText is a learned push server's evidence on one line.
func evidenceText(e *control.Evidence) string {
	if e == nil {
		return ""
	}
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+fmt.Sprintf("%q", esc(v)))
		}
	}
	add("how", e.How)
	add("account", e.Account)
	add("ua", e.UserAgent)
	add("aor", e.AOR)
	add("uri", e.URI)
	add("ptr", e.PTR)
	if !e.LastSeen.IsZero() {
		parts = append(parts, "last_seen="+e.LastSeen.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, " ")
}
