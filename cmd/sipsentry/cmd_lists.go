package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/geoconf"
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
	cmd.AddCommand(newListsUpdateCommand(g), newListsShowCommand(g), newListsAcceptCommand(g))
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
than geo.min_entries CIDR lines, covers fewer addresses than geo.max_shrink
allows or changed more than geo.max_churn against the last good one is not
used: the last good one is kept, and the exit status is 1. A deliberate
change the checks refuse is taken with "sipsentry lists accept FILE".

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

// openGeoForLists opens the lists only (no databases). log nil: geo's
// own log lines are dropped, because the command prints every outcome
// itself (once). store: keep the last good copies under state_dir (update);
// else nothing is written (show).
func openGeoForLists(cmd *cobra.Command, g *globalOptions, log *slog.Logger, store bool) (*geo.Geo, *config.Config, error) {
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		return nil, nil, err
	}
	if len(cfg.Geo.AllowCountries) == 0 && cfg.Geo.ListsDir == "" {
		return nil, nil, usagef("lists: geo.allow_countries is empty in %s: there is no list to update (add e.g. allow_countries = [\"JP\"] to [geo])", configName(cfg.Path))
	}
	gc := cfg.Geo
	gc.MMDB, gc.ASNMMDB = "", "" // not needed for lists; don't load 10 MB for nothing
	opts := geoconf.Options(gc, cfg.StateDir)
	opts.StoreLastGood = store
	gdb, err := geo.Open(opts, log)
	if err != nil {
		return nil, nil, usageError{err}
	}
	return gdb, cfg, nil
}

func configName(p string) string {
	if p == "" {
		return "the built-in defaults"
	}
	return p
}

func runListsUpdate(ctx context.Context, cmd *cobra.Command, o listsUpdateOptions, g *globalOptions) error {
	gdb, cfg, err := openGeoForLists(cmd, g, nil, true)
	if err != nil {
		return err
	}
	rs, uerr := gdb.Update(ctx, o.dryRun)
	if uerr != nil && !errors.Is(uerr, geo.ErrListsKept) {
		return uerr
	}
	if line := offlineLine(rs, cfg); line != "" && !o.json {
		// Every list failed to download, for one reason: one line says it
		// all (a table of identical failures would not).
		return errors.New(line)
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
	var kept, none []string
	for _, r := range rs {
		switch {
		case r.Kept() && r.Before > 0:
			kept = append(kept, r.List)
		case r.Kept():
			none = append(none, r.List)
		}
	}
	if len(kept)+len(none) == 0 {
		return nil
	}
	msg := fmt.Sprintf("lists update: %d of %d lists not updated (reasons above)", len(kept)+len(none), len(rs))
	if len(kept) > 0 {
		msg += fmt.Sprintf("; the last good version stays in use for %s", strings.Join(kept, ", "))
	}
	if len(none) > 0 {
		msg += fmt.Sprintf("; there is no good copy of %s, so its country cannot be allowed by country", strings.Join(none, ", "))
	}
	return errors.New(msg)
}

// offlineLine is the one line for an update where every list failed to
// download for the same reason (offline, DNS, a proxy), "" otherwise. It
// says what is in use and how to run without the network.
func offlineLine(rs []geo.ListResult, cfg *config.Config) string {
	if len(rs) == 0 || cfg.Geo.ListsDir != "" {
		return ""
	}
	reason := strings.TrimPrefix(rs[0].Reason, "download: ")
	var none []string
	for _, r := range rs {
		if r.Decision != geo.DecisionFailed || r.Check != geo.CheckDownload || strings.TrimPrefix(r.Reason, "download: ") != reason {
			return ""
		}
		if r.Before == 0 {
			none = append(none, r.List)
		}
	}
	host := rs[0].Source
	if u, err := url.Parse(host); err == nil && u.Host != "" {
		host = u.Host
	}
	var countries []string
	for _, r := range rs {
		if !slices.Contains(countries, r.Country) {
			countries = append(countries, r.Country)
		}
	}
	state := "the last good lists stay in use"
	switch {
	case len(none) == len(rs):
		state = fmt.Sprintf("no list has been downloaded yet, so %s cannot be allowed by country", strings.Join(countries, ", "))
	case len(none) > 0:
		state = fmt.Sprintf("no good copy of %s yet; the others' last good versions stay in use", strings.Join(none, ", "))
	}
	return fmt.Sprintf("lists update: cannot download the lists: %s; %s. Without access to %s, put <cc>-ipv4.txt and <cc>-ipv6.txt files in a directory and set geo.lists_dir in %s",
		reason, state, host, configName(cfg.Path))
}

func newListsAcceptCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "accept FILE",
		Short: "Take a list file as its country's list, past the shrink, churn and floor checks",
		Long: `Accept takes FILE (named <cc>-ipv4.txt or <cc>-ipv6.txt, e.g. a file in
geo.lists_dir that you really mean to shrink) as that list's last good copy,
although it has fewer than geo.min_entries CIDR lines, or shrank or changed
more than geo.max_shrink / geo.max_churn allow. It must still be a list of
its family's CIDRs. It is stored in <state_dir>/lists and logged; a running
daemon takes it at its next reload (systemctl reload sipsentry) or refresh.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("lists accept: give one list file, e.g. sipsentry lists accept /etc/sipsentry/lists/jp-ipv4.txt")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runListsAccept(cmd, g, args[0])
		},
	}
	return cmd
}

func runListsAccept(cmd *cobra.Command, g *globalOptions, path string) error {
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		return err
	}
	gc := cfg.Geo
	gc.MMDB, gc.ASNMMDB = "", ""
	opts := geoconf.Options(gc, cfg.StateDir)
	opts.StoreLastGood = true
	// geo's own log would first refuse the very file being accepted; the
	// accept is logged here, once.
	gdb, err := geo.Open(opts, nil)
	if err != nil {
		return usageError{err}
	}
	r, err := gdb.Accept(path)
	if err != nil {
		if r.List == "" {
			return usageError{err} // not a list, or badly named: the input
		}
		return err
	}
	g.logger(cfg).Warn("lists accept: list accepted past the floor, shrink and churn checks", "list", r.List, "file", r.Source,
		"lines", r.Lines, "before", r.Before, "after", r.After, "added", r.Added, "removed", r.Removed)
	fmt.Fprintf(cmd.OutOrStdout(), "%s: accepted %s (%d CIDR lines; entries %d → %d, +%d -%d). A running daemon takes it at its next reload (systemctl reload sipsentry) or list refresh.\n",
		r.List, r.Source, r.Lines, r.Before, r.After, r.Added, r.Removed)
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
			gdb, _, err := openGeoForLists(cmd, g, nil, false)
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
			if err := tw.Flush(); err != nil {
				return err
			}
			// What the table cannot show: a source refused, or no good copy.
			for _, p := range gdb.Health() {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+p.String())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}
