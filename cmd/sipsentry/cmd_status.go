package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/daemon"
	"github.com/sipsentry/sipsentry/internal/metrics"
	"github.com/sipsentry/sipsentry/state"
)

type statusOptions struct {
	json    bool
	timeout time.Duration
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon: AMI connection, mode, set sizes, list ages, last events",
		Long: `Status asks the running daemon (the /status page on [metrics] listen) and
prints what it is doing. When no daemon answers, it says so, prints what the
state database holds, and exits with status 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), cmd, o, g)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for the daemon")
	return cmd
}

func runStatus(ctx context.Context, cmd *cobra.Command, o statusOptions, g *globalOptions) error {
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var r daemon.StatusReport
	fetchErr := errors.New("[metrics] listen is empty: the daemon serves no status page")
	if cfg.Metrics.Listen != "" {
		hc, base := metrics.StatusClient(cfg.Metrics.Listen, o.timeout)
		fetchErr = fetchStatus(ctx, hc, base+"/status", o.timeout, &r)
	}
	if fetchErr != nil {
		r = daemon.StatusReport{Running: false, Error: fetchErr.Error()}
	}
	// The totals come from the state DB, which outlives the process: the
	// daemon's own counters start at zero with every restart.
	if st, err := state.OpenReadOnly(state.Path(cfg.StateDir)); err == nil {
		if cc, err := st.DroppedCountries(ctx, time.Now().Add(-time.Hour), 5); err == nil {
			r.DroppedCountries = cc
		}
		st.Close()
	}
	if r.DB == nil {
		if st, err := state.OpenReadOnly(state.Path(cfg.StateDir)); err == nil {
			if sm, err := st.Summary(ctx); err == nil {
				r.DB = &sm
			}
			if !r.Running {
				if bans, err := st.ActiveBans(ctx); err == nil {
					r.Bans = bans
				}
			}
			st.Close()
		}
	}
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printStatus(out, &r)
	}
	if !r.Running {
		return fmt.Errorf("status: no daemon answered on %s (%v): start it with `sipsentry run` or `systemctl start sipsentry`", cfg.Metrics.Listen, fetchErr)
	}
	return nil
}

func fetchStatus(ctx context.Context, hc *http.Client, url string, timeout time.Duration, r *daemon.StatusReport) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(r); err != nil {
		return fmt.Errorf("bad status document: %w", err)
	}
	return nil
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func printStatus(w io.Writer, r *daemon.StatusReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	if !r.Running {
		fmt.Fprintf(tw, "daemon\tnot running (%s)\n", r.Error)
		printDBTotals(tw, r)
		for _, b := range r.Bans {
			fmt.Fprintf(tw, "  ban\t%s until %s (%s)\n", b.Addr, b.Until.Local().Format(time.DateTime), b.Reason)
		}
		return
	}
	fmt.Fprintf(tw, "daemon\trunning since %s (pid %d, %s)\n", r.Started.Local().Format(time.DateTime), r.PID, r.Version)
	if r.Health != nil {
		if r.Health.Status == "ok" {
			fmt.Fprintf(tw, "health\tok\n")
		} else {
			fmt.Fprintf(tw, "health\tDEGRADED (/healthz answers 503)\n")
			for _, cond := range metrics.Conditions {
				if why, ok := r.Health.Reasons[cond]; ok {
					fmt.Fprintf(tw, "  %s\t%s\n", cond, why)
				}
			}
		}
	}
	printDBTotals(tw, r)
	if r.Replay != "" {
		fmt.Fprintf(tw, "source\treplay of %s\n", r.Replay)
	}
	if r.AMI != nil {
		fmt.Fprintf(tw, "AMI\t%s %s (logins %d, events %d, dropped %d)\n", r.AMI.Address,
			yesNo(r.AMI.Connected, "connected", "NOT CONNECTED"), r.AMI.Logins, r.AMI.Events, r.AMI.EventsDropped)
	}
	if r.ARI != nil {
		fmt.Fprintf(tw, "ARI\t%s (%d events, %d live contacts)\n", yesNo(r.ARI.Connected, "connected", "NOT CONNECTED"),
			r.ARI.Events, len(r.ARI.Contacts))
	} else {
		fmt.Fprintf(tw, "ARI\tnot configured\n")
	}
	cc := strings.Join(r.AllowCountries, ",")
	if cc == "" {
		cc = "none"
	}
	fmt.Fprintf(tw, "mode\tgeo_mode %s, allowed countries %s\n", r.GeoMode, cc)
	if f := r.Firewall; f != nil {
		fmt.Fprintf(tw, "firewall\t%s, mode %s, %s\n", f.Backend, f.Mode, yesNo(f.Up, "up", "DOWN"))
		sets := append([]firewall.SetInfo(nil), f.Sets...)
		sort.Slice(sets, func(i, j int) bool {
			if sets[i].Set != sets[j].Set {
				return sets[i].Set < sets[j].Set
			}
			return sets[i].Family < sets[j].Family
		})
		for _, s := range sets {
			fmt.Fprintf(tw, "  set %s %s\t%d entries (max %d)\n", s.Set, s.Family, s.Entries, s.MaxElem)
		}
		if f.Error != "" {
			fmt.Fprintf(tw, "  error\t%s\n", f.Error)
		}
	}
	for _, l := range r.Lists {
		age := "unknown"
		if !l.Verified.IsZero() {
			age = (time.Duration(l.AgeSeconds) * time.Second).String()
		}
		fmt.Fprintf(tw, "list %s\t%d prefixes, age %s%s\n", l.Name, l.Entries, age, yesNo(l.Allowed, "", " (not allowed)"))
	}
	if e := r.Engine; e != nil {
		fmt.Fprintf(tw, "since start\t%d events, %d sources, %d active bans, %d would-bans, %d learned allows\n",
			e.Events, e.Sources, e.ActiveBans, e.WouldBans, e.LearnedAllows)
		kinds := make([]string, 0, len(e.Decisions))
		for k, n := range e.Decisions {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		if len(kinds) > 0 {
			fmt.Fprintf(tw, "decisions\t%s\n", strings.Join(kinds, ", "))
		}
	}
	if len(r.LastEvents) > 0 {
		fmt.Fprintf(tw, "last events\t\n")
		for _, e := range r.LastEvents {
			acct := ""
			if e.Account != "" {
				acct = fmt.Sprintf(" account %q", e.Account)
			}
			fmt.Fprintf(tw, "  %s\t%s %s %s%s%s\n", e.Time.Local().Format(time.TimeOnly), e.Type, e.Service, e.Source, acct,
				yesNo(e.Suspect, " (injection suspected)", ""))
		}
	}
}

// printDBTotals prints the state DB's totals: every source and event kept
// (within engine.event_retention), across restarts.
func printDBTotals(w io.Writer, r *daemon.StatusReport) {
	if r.DB == nil {
		fmt.Fprintf(w, "state DB\tnot readable (no totals)\n")
		return
	}
	fmt.Fprintf(w, "state DB\t%d sources, %d events, %d active bans, %d learned allows, %d flags\n",
		r.DB.Sources, r.DB.Events, r.DB.ActiveBans, r.DB.LearnedAllows, r.DB.Flags)
	if len(r.DroppedCountries) > 0 {
		var parts []string
		for _, c := range r.DroppedCountries {
			parts = append(parts, fmt.Sprintf("%s %d sources/%d packets", cmp.Or(c.Country, "?"), c.Sources, c.Packets))
		}
		fmt.Fprintf(w, "dropped, last hour\t%s\n", strings.Join(parts, ", "))
	}
}
