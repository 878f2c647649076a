package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/daemon"
)

func newListsCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lists",
		Short: "Show or refresh the allowed countries' CIDR lists",
		Long: `The country lists (geo.allow_countries) come from a URL template
(geo.list_url_v4 / geo.list_url_v6, default the ipverse lists; the repository
is also published as ipverse/country-ip-blocks with the same file layout) or
from local files in geo.lists_dir. Downloads are cached in <state_dir>/lists.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newListsUpdateCommand(g), newListsShowCommand(g))
	return cmd
}

type listsUpdateOptions struct {
	dryRun bool
	json   bool
}

func newListsUpdateCommand(g *globalOptions) *cobra.Command {
	var o listsUpdateOptions
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Fetch, validate and store the country lists now",
		Long: `Update fetches every allowed country's IPv4 and IPv6 list (or re-reads
geo.lists_dir), validates it and stores it in the cache the daemon loads at
start. Per list it shows entries before → after, prefixes added and removed,
and the decision. A list that fails to download, fails to parse, has fewer
than geo.min_entries entries or shrank by more than geo.max_shrink is not
used: the last good one is kept, and the exit status is 1.

A running daemon fetches on its own every geo.refresh and on SIGHUP; the
cache written here is what the daemon loads when it starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runListsUpdate(cmd.Context(), cmd, o, g)
		},
	}
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "fetch and validate, but write nothing")
	cmd.Flags().BoolVar(&o.json, "json", false, "print a JSON array")
	return cmd
}

func openGeoForLists(cmd *cobra.Command, g *globalOptions) (*geo.Geo, error) {
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		return nil, err
	}
	gc := cfg.Geo
	gc.MMDB, gc.ASNMMDB = "", "" // not needed for lists; don't load 10 MB for nothing
	gdb, err := geo.Open(daemon.GeoOptions(gc, cfg.StateDir), g.logger(cfg))
	if err != nil {
		return nil, usageError{err}
	}
	if len(cfg.Geo.AllowCountries) == 0 && cfg.Geo.ListsDir == "" {
		return nil, usagef("lists: geo.allow_countries is empty in %s: there is no list to update (add e.g. allow_countries = [\"JP\"] to [geo])", configName(cfg.Path))
	}
	return gdb, nil
}

func configName(p string) string {
	if p == "" {
		return "the built-in defaults"
	}
	return p
}

func runListsUpdate(ctx context.Context, cmd *cobra.Command, o listsUpdateOptions, g *globalOptions) error {
	gdb, err := openGeoForLists(cmd, g)
	if err != nil {
		return err
	}
	rs, uerr := gdb.Update(ctx, o.dryRun)
	if uerr != nil && !errors.Is(uerr, geo.ErrListsKept) {
		return uerr
	}
	out := cmd.OutOrStdout()
	if o.json {
		if rs == nil {
			rs = []geo.ListResult{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rs); err != nil {
			return err
		}
	} else if err := printListResults(out, rs); err != nil {
		return err
	}
	kept := 0
	for _, r := range rs {
		if r.Kept() {
			kept++
		}
	}
	if kept > 0 {
		return fmt.Errorf("lists update: %d of %d lists not updated; their last good versions stay in use (reasons above)", kept, len(rs))
	}
	return nil
}

func printListResults(w io.Writer, rs []geo.ListResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIST\tENTRIES\tADDED\tREMOVED\tDECISION\tREASON")
	for _, r := range rs {
		d := string(r.Decision)
		if r.DryRun && r.Decision == geo.DecisionUpdated {
			d = "would update (dry run)"
		}
		if r.Kept() && r.Before > 0 {
			d += ", kept last good"
		} else if r.Kept() {
			d += ", no list yet"
		}
		entries := fmt.Sprintf("%d → %d", r.Before, r.After)
		reason := r.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t+%d\t-%d\t%s\t%s\n", r.List, entries, r.Added, r.Removed, d, reason)
	}
	return tw.Flush()
}

// fmtAge prints an age the way an admin reads it: 40s, 12m, 5h, 3d.
func fmtAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

type listsShowOptions struct{ json bool }

func newListsShowCommand(g *globalOptions) *cobra.Command {
	var o listsShowOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the lists in the cache (or geo.lists_dir): entries, age, source",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			gdb, err := openGeoForLists(cmd, g)
			if err != nil {
				return err
			}
			ls := gdb.Lists()
			if o.json {
				if ls == nil {
					ls = []geo.ListInfo{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(ls)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LIST\tALLOWED\tENTRIES\tAGE\tSOURCE")
			for _, l := range ls {
				age := "-"
				if !l.Verified.IsZero() {
					age = fmtAge(time.Since(l.Verified))
				}
				allowed := "no"
				if l.Allowed {
					allowed = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", l.Name, allowed, l.Entries, age, l.Source)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}
