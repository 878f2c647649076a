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

func newAllowsCommand(g *globalOptions) *cobra.Command {
	var o listOptions
	cmd := &cobra.Command{
		Use:   "allows",
		Short: "List the allow entries: static, learned push servers with their evidence, manual",
		Long: `List what is let in ahead of bans and countries: the static entries of
firewall.allow, the push servers learned from their registrations (with the
evidence: how, account, user agent, contact URI, PTR, last seen) and the
manual entries of ` + "`sipsentry allow`" + ` (with their comment and operator uid).

From the running daemon through its control socket; without a daemon, from
the config and the state DB.

--json prints one array of objects (prefix, kind, until, comment, evidence,
uid, time_left_seconds).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var allows []control.AllowRecord
			now := time.Now()
			r, err := listViaControl(cmd, g, func(ctx context.Context, h control.Handler, _ uint32) error {
				allows = allows[:0] // a second attempt (offline) starts over
				return h.Allows(ctx, now, func(a control.AllowRecord) error { allows = append(allows, a); return nil })
			})
			if err != nil {
				return fmt.Errorf("allows: %w", err)
			}
			slices.SortStableFunc(allows, func(a, b control.AllowRecord) int {
				if c := strings.Compare(kindOrder(a.Kind), kindOrder(b.Kind)); c != 0 {
					return c
				}
				return a.Prefix.Addr().Compare(b.Prefix.Addr())
			})
			if o.json {
				return printAllowsJSON(r.out, allows, now)
			}
			printAllows(r.out, allows, now)
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON array of objects")
	return cmd
}

func kindOrder(k string) string {
	switch k {
	case control.AllowStatic:
		return "1"
	case control.AllowLearned:
		return "2"
	case control.AllowSeeded:
		return "3"
	case control.AllowManual:
		return "4"
	}
	return "5" + k
}

type allowJSON struct {
	control.AllowRecord
	Until           *time.Time `json:"until,omitempty"`
	TimeLeftSeconds *float64   `json:"time_left_seconds,omitempty"`
}

func printAllowsJSON(w io.Writer, allows []control.AllowRecord, now time.Time) error {
	out := make([]allowJSON, 0, len(allows))
	for _, a := range allows {
		j := allowJSON{AllowRecord: a}
		j.Until, j.TimeLeftSeconds = untilJSON(a.Until, now)
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func printAllows(w io.Writer, allows []control.AllowRecord, now time.Time) {
	if len(allows) == 0 {
		fmt.Fprintln(w, "no allow entries")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tKIND\tUNTIL\tLEFT\tDETAIL")
	for _, a := range allows {
		until, left := untilText(a.Until, now)
		var detail string
		switch a.Kind {
		case control.AllowStatic:
			detail = "firewall.allow"
		case control.AllowLearned, control.AllowSeeded:
			detail = evidenceText(a.Evidence)
		default:
			var parts []string
			if a.Comment != "" {
				parts = append(parts, fmt.Sprintf("%q", esc(a.Comment)))
			}
			if a.UID != nil {
				parts = append(parts, "by "+uidText(a.UID))
			}
			detail = strings.Join(parts, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Prefix, esc(a.Kind), until, left, detail)
	}
	tw.Flush()
}
