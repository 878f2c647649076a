package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/daemon"
	"github.com/sipsentry/sipsentry/report"
	"github.com/sipsentry/sipsentry/seclog"
	"github.com/sipsentry/sipsentry/state"
)

type sourcesOptions struct {
	fromLog     []string
	fromAMI     []string
	db          string
	since       string
	countries   []string
	statuses    []string
	minFailures int
	sort        string
	limit       int
	json, csv   bool
	width       int

	mmdb, asnMMDB, listsDir string
	allow                   []string
}

func newSourcesCommand(g *globalOptions) *cobra.Command {
	var o sourcesOptions
	cmd := &cobra.Command{
		Use:   "sources",
		Short: "Report who hits the PBX: one row per source address, from the daemon's DB or from logs",
		Long: `Sources prints one row per source address: its country by the MaxMind DB and
by the country lists, whether it is in the allowed set, ASN/org (with an ASN
DB), first and last seen, counts (auth ok, auth failed, unknown account, ACL,
other), the accounts it tried, the last user agent, what sipsentry decided
(allowed, learned push, banned until T, flagged) and a note.

Without --from-log/--from-ami it reads the daemon's state DB read-only
(<state_dir>/sipsentry.db, or --db); that works while the daemon runs.

Offline, it needs no daemon, no root and no config file:
  --from-log FILE   Asterisk's security log (logger.conf: security => security)
  --from-ami FILE   a raw AMI capture (the bytes the manager port sent)
Offline there is no daemon decision: a source whose events carry injection
evidence is "flagged", every other one shows "-". Lines of a log that cannot
be read are counted and reported after the table (not fatal).

Geo comes from the [geo] config when a config file exists; the flags
override it, e.g. --lists-dir contrib/sample/lists. "?" means that source of
country data is not loaded, "-" that it has no answer for the address.

Output: a table sized to the terminal (--width to force), or --json (one
array of objects) or --csv.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSources(cmd.Context(), cmd, o, g)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.fromLog, "from-log", nil, "read Asterisk security log `FILE` (repeatable)")
	f.StringArrayVar(&o.fromAMI, "from-ami", nil, "read raw AMI capture `FILE` (repeatable)")
	f.StringVar(&o.db, "db", "", "state DB `FILE` (default <state_dir>/sipsentry.db)")
	f.StringVar(&o.since, "since", "", "only sources seen since `WHEN`: a duration back from now (24h, 7d) or a time (2026-11-25, 2026-11-25T13:00:00Z)")
	f.StringSliceVar(&o.countries, "country", nil, "only sources in these `CODES` (by list or mmdb), comma-separated")
	f.StringSliceVar(&o.statuses, "status", nil, "only these `STATUSES`: allowed, learned_push, banned, would_ban, flagged, none")
	f.IntVar(&o.minFailures, "min-failures", 0, "only sources with at least `N` failures")
	f.StringVar(&o.sort, "sort", "last", "order by `KEY`: last, failures, ip, country")
	f.IntVar(&o.limit, "limit", 0, "print at most `N` rows (0: all)")
	f.BoolVar(&o.json, "json", false, "print one JSON array of objects")
	f.BoolVar(&o.csv, "csv", false, "print CSV with a header line")
	f.IntVar(&o.width, "width", 0, "table width in `COLUMNS` (default: the terminal's; unlimited when not a terminal)")
	f.StringVar(&o.mmdb, "mmdb", "", "country MaxMind DB `FILE` (overrides geo.mmdb)")
	f.StringVar(&o.asnMMDB, "asn-mmdb", "", "ASN MaxMind DB `FILE` (overrides geo.asn_mmdb)")
	f.StringVar(&o.listsDir, "lists-dir", "", "`DIR` of <cc>-ipv4.txt/<cc>-ipv6.txt lists (overrides geo.lists_dir)")
	f.StringSliceVar(&o.allow, "allow", nil, "allowed country `CODES`, comma-separated (overrides geo.allow_countries)")
	cmd.MarkFlagsMutuallyExclusive("json", "csv")
	return cmd
}

func runSources(ctx context.Context, cmd *cobra.Command, o sourcesOptions, g *globalOptions) error {
	offline := len(o.fromLog) > 0 || len(o.fromAMI) > 0
	ropts, err := o.reportOptions(time.Now())
	if err != nil {
		return err
	}
	if o.width < 0 || o.limit < 0 || o.minFailures < 0 {
		return usagef("sources: --width, --limit and --min-failures must not be negative")
	}
	// Offline needs no config: a missing or unreadable default file means
	// built-in defaults; an explicit --config must load.
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		if !offline || cmd.Flags().Changed("config") {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "sipsentry: warning: %v; using built-in defaults\n", err)
		cfg = config.Default()
	}
	if err := applyGeoFlags(cmd, &cfg.Geo, o.mmdb, o.asnMMDB, o.listsDir, o.allow); err != nil {
		return err
	}
	log := quietLogger(cmd.ErrOrStderr())
	gdb, err := geo.Open(daemon.GeoOptions(cfg.Geo, cfg.StateDir), log)
	if err != nil {
		return usageError{err}
	}
	gi := report.GeoInfo{ListsLoaded: len(gdb.Lists()) > 0, AllowCountries: gdb.AllowCountries()}
	for _, d := range gdb.Databases() {
		switch d.Setting {
		case "geo.mmdb":
			gi.MMDBLoaded = d.Loaded
		case "geo.asn_mmdb":
			gi.ASNLoaded = d.Loaded
		}
	}

	var inputs []report.Input
	var footer []string
	if offline {
		inputs, footer, err = readOffline(o)
	} else {
		inputs, err = readLive(ctx, o, cfg)
	}
	if err != nil {
		return err
	}
	rep := report.Build(inputs, gdb, gi)
	if err := rep.Apply(ropts); err != nil {
		return usageError{err}
	}
	out := cmd.OutOrStdout()
	switch {
	case o.json:
		err = report.WriteJSON(out, rep)
	case o.csv:
		err = report.WriteCSV(out, rep)
	default:
		width := o.width
		if width == 0 {
			if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
					width = w
				}
			}
		}
		err = report.WriteTable(out, rep, report.TableOptions{Width: width, Footer: footer})
		footer = nil
	}
	if err != nil {
		return fmt.Errorf("sources: writing the report: %w", err)
	}
	// Machine-readable output keeps stdout clean; the reading summary goes to stderr.
	for _, l := range footer {
		fmt.Fprintln(cmd.ErrOrStderr(), l)
	}
	return nil
}

// quietLogger shows geo's warnings (a list that did not parse) without the
// info chatter a one-shot report does not need.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (o sourcesOptions) reportOptions(now time.Time) (report.Options, error) {
	ro := report.Options{Statuses: o.statuses, MinFailures: o.minFailures, Sort: o.sort, Limit: o.limit}
	for _, cc := range o.countries {
		cc = strings.ToUpper(strings.TrimSpace(cc))
		if cc == "" {
			continue
		}
		if cc != "?" && !config.IsCountryCode(cc) {
			return ro, usagef("sources: --country: unknown country code %q: want ISO 3166-1 alpha-2 codes such as JP,DE", cc)
		}
		ro.Countries = append(ro.Countries, cc)
	}
	if o.since != "" {
		t, err := parseSince(o.since, now)
		if err != nil {
			return ro, usageError{err}
		}
		ro.Since = t
	}
	return ro, nil
}

// parseSince accepts a duration back from now ("90m", "24h", "7d") or an
// absolute time (RFC 3339, "2006-01-02 15:04", "2006-01-02"; UTC unless
// the value says otherwise).
func parseSince(s string, now time.Time) (time.Time, error) {
	var d config.Duration
	if err := d.UnmarshalText([]byte(s)); err == nil {
		return now.Add(-d.D()), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("sources: --since %q: want a duration (24h, 7d) or a time (2026-11-25, 2026-11-25T13:00:00Z)", s)
}

// readOffline aggregates logs and captures into one report input. A file
// that cannot be opened is a usage error (exit 2) naming it; garbage inside
// a file is counted and reported.
func readOffline(o sourcesOptions) ([]report.Input, []string, error) {
	agg := report.NewAggregator()
	var footer []string
	for _, path := range o.fromLog {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, openError("--from-log", path, err)
		}
		r := seclog.NewReader(f)
		for {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return nil, nil, fmt.Errorf("sources: %s: %w", path, err)
			}
			agg.Add(&ev)
		}
		f.Close()
		st := r.Stats()
		line := fmt.Sprintf("%s: %d lines, %d events, %d garbage", path, st.Lines, st.Events, st.Garbage)
		if st.Garbage > 0 {
			line += fmt.Sprintf(" (first at line %d)", st.FirstGarbageLine)
		}
		if st.Suspicious > 0 {
			line += fmt.Sprintf(", %d with injection evidence", st.Suspicious)
		}
		footer = append(footer, line)
		if st.Events == 0 && st.Lines > 0 {
			footer = append(footer, fmt.Sprintf("%s: no security events found: is this the file of logger.conf's `security => security` channel?", path))
		}
	}
	for _, path := range o.fromAMI {
		line, err := readAMICapture(path, agg)
		if err != nil {
			return nil, nil, err
		}
		footer = append(footer, line)
	}
	return agg.Inputs(), footer, nil
}

func openError(flag, path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return usagef("sources: %s %s: no such file", flag, path)
	}
	return usagef("sources: %s %s: %v", flag, path, err)
}

// readAMICapture reads a raw server->client AMI byte stream: an optional
// banner, then messages. Security events are parsed by ami.ParseSecurityEvent;
// one without a usable source (an event cut short by an injected blank
// line) is counted, never attributed.
func readAMICapture(path string, agg *report.Aggregator) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", openError("--from-ami", path, err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	hasBanner := false
	if head, _ := br.Peek(len("Asterisk Call Manager/")); string(head) == "Asterisk Call Manager/" {
		hasBanner = true
	}
	r := ami.NewReader(br, ami.ReaderOptions{})
	if hasBanner {
		if _, err := r.ReadBanner(); err != nil {
			return "", fmt.Errorf("sources: %s: %w", path, err)
		}
	}
	var events, noSource, suspicious int
	truncated := false
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			truncated = true
			break
		}
		if err != nil {
			return "", fmt.Errorf("sources: %s: %w", path, err)
		}
		if !ami.IsSecurityEvent(&m) {
			continue
		}
		ev, err := ami.ParseSecurityEvent(&m)
		if err != nil {
			noSource++
			continue
		}
		events++
		if ev.Suspicion != "" {
			suspicious++
		}
		agg.Add(&ev)
	}
	st := r.Stats()
	line := fmt.Sprintf("%s: %d messages, %d security events, %d without a source, %d garbage",
		path, st.Messages, events, noSource, st.Malformed+st.Oversized)
	if suspicious > 0 {
		line += fmt.Sprintf(", %d with injection evidence", suspicious)
	}
	if truncated {
		line += ", ends inside a message"
	}
	return line, nil
}

// readLive reads the daemon's state DB read-only; WAL lets it do so while
// the daemon writes.
func readLive(ctx context.Context, o sourcesOptions, cfg *config.Config) ([]report.Input, error) {
	path := o.db
	if path == "" {
		path = state.Path(cfg.StateDir)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("sources: no state DB at %s: is the daemon running with state_dir = %q? To analyse logs instead: sipsentry sources --from-log /var/log/asterisk/security", path, cfg.StateDir)
		}
		return nil, usagef("sources: %s: %v", path, err)
	}
	st, err := state.OpenReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	recs, err := st.Sources(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]report.Input, len(recs))
	for i, r := range recs {
		out[i] = report.Input{Source: r.Source, Status: r.Status, BannedUntil: r.BannedUntil, Offences: r.Offences, Note: r.Note}
	}
	return out, nil
}
