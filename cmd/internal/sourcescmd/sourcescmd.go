// Package sourcescmd is the `sources` command, shared by the sipsentry
// binary and the light sipsentry-report binary (offline reports only).
//
// It must never import the state store (and with it SQLite): the daemon's
// DB is read through Env.ReadDB, which only the full binary supplies. That
// keeps `go run ./cmd/sipsentry-report` free of the slowest packages to
// compile (modernc.org/sqlite and its libc).
package sourcescmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/cmd/internal/cliexit"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/geoconf"
	"github.com/sipsentry/sipsentry/report"
	"github.com/sipsentry/sipsentry/seclog"
)

// Env is what the command needs from the binary that hosts it.
type Env struct {
	// LoadConfig reads --config; it returns the built-in defaults when the
	// default file is absent.
	LoadConfig func(cmd *cobra.Command) (*config.Config, error)
	// ReadDB reads the daemon's state DB read-only. Nil in a build without
	// the state store: then only --from-log/--from-ami work.
	ReadDB func(ctx context.Context, path string) ([]report.Input, error)
	// DBPath is the DB file under a state directory.
	DBPath func(stateDir string) string
	// Prog is how the command is invoked, for hints ("sipsentry sources").
	Prog string
}

// Options are the command's flags.
type Options struct {
	FromLog     []string
	FromAMI     []string
	DB          string
	Since       string
	Countries   []string
	Statuses    []string
	Dropped     bool // --dropped: --status dropped
	MinFailures int
	Sort        string
	Limit       int
	JSON, CSV   bool
	Width       int

	MMDB, ASNMMDB, ListsDir string
	Allow                   []string
}

// Long is the command's help text.
const Long = `Sources prints one row per source address: its country by the MaxMind DB and
by the country lists, whether it is in the allowed set, ASN/org (with an ASN
DB), first and last seen, counts (auth ok, auth failed, unknown account, ACL,
challenges never answered, injection, other), the accounts it used (a failed
one marked !), the last user agent, what the firewall does with it and a note.

Without --from-log/--from-ami it reads the daemon's state DB read-only
(<state_dir>/sipsentry.db, or --db); that works while the daemon runs.

Offline, it needs no daemon, no root and no config file:
  --from-log FILE...  Asterisk's security log (logger.conf: security => security);
                      several files after one flag work, so a shell glob does:
                      --from-log /var/log/asterisk/security*
  --from-ami FILE...  a raw AMI capture (the bytes the manager port sent)
Files after the flags belong to the flag given (name each file with its
flag when both are used). Offline there is no daemon decision: STATUS shows
what the configured firewall would do (allowed: static/country, dropped,
flagged for injection evidence, local for the PBX's own addresses). Lines
of a log that cannot be read are counted and reported after the table.

Geo comes from the [geo] config when a config file exists; the flags
override it, e.g. --lists-dir contrib/sample/lists. "?" means that source of
country data is not loaded, "-" that it has no answer for the address.

Output: a table sized to the terminal (--width to force; long cells wrap,
no line is cut), or --json (one array of objects) or --csv.`

// New returns the `sources` command (use is its cobra Use line).
func New(use string, env Env) *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   use,
		Short: "Report who hits the PBX: one row per source address, from the daemon's DB or from logs",
		Long:  Long,
		Args:  cobra.ArbitraryArgs,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return Run(cmd.Context(), cmd, o, args, env)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.FromLog, "from-log", nil, "read Asterisk security log `FILE` (repeatable; files after it count too)")
	f.StringArrayVar(&o.FromAMI, "from-ami", nil, "read raw AMI capture `FILE` (repeatable; files after it count too)")
	f.StringVar(&o.DB, "db", "", "state DB `FILE` (default <state_dir>/sipsentry.db)")
	f.StringVar(&o.Since, "since", "", "only sources seen since `WHEN`: a duration back from now (24h, 7d) or a time (2026-11-25, 2026-11-25T13:00:00Z)")
	f.StringSliceVar(&o.Countries, "country", nil, "only sources in these `CODES` (by list or mmdb), comma-separated")
	f.StringSliceVar(&o.Statuses, "status", nil, "only these `STATUSES`: "+strings.Join(report.StatusFilters, ", "))
	f.BoolVar(&o.Dropped, "dropped", false, "only sources the firewall dropped (the same as --status dropped)")
	f.IntVar(&o.MinFailures, "min-failures", 0, "only sources with at least `N` failures")
	f.StringVar(&o.Sort, "sort", "last", "order by `KEY`: "+strings.Join(report.SortKeys, ", "))
	f.IntVar(&o.Limit, "limit", 0, "print at most `N` rows (0: all)")
	f.BoolVar(&o.JSON, "json", false, "print one JSON array of objects")
	f.BoolVar(&o.CSV, "csv", false, "print CSV with a header line")
	f.IntVar(&o.Width, "width", 0, "table width in `COLUMNS` (default: the terminal's; unlimited when not a terminal)")
	f.StringVar(&o.MMDB, "mmdb", "", "country MaxMind DB `FILE` (overrides geo.mmdb)")
	f.StringVar(&o.ASNMMDB, "asn-mmdb", "", "ASN MaxMind DB `FILE` (overrides geo.asn_mmdb)")
	f.StringVar(&o.ListsDir, "lists-dir", "", "`DIR` of <cc>-ipv4.txt/<cc>-ipv6.txt lists (overrides geo.lists_dir)")
	f.StringSliceVar(&o.Allow, "allow", nil, "allowed country `CODES`, comma-separated (overrides geo.allow_countries)")
	cmd.MarkFlagsMutuallyExclusive("json", "csv")
	_ = cmd.RegisterFlagCompletionFunc("sort", fixedCompletion(report.SortKeys))
	_ = cmd.RegisterFlagCompletionFunc("status", fixedCompletion(report.StatusFilters))
	_ = cmd.MarkFlagFilename("from-log")
	_ = cmd.MarkFlagFilename("from-ami")
	_ = cmd.MarkFlagFilename("db", "db")
	_ = cmd.MarkFlagFilename("mmdb", "mmdb")
	_ = cmd.MarkFlagFilename("asn-mmdb", "mmdb")
	_ = cmd.MarkFlagDirname("lists-dir")
	return cmd
}

// fixedCompletion completes a flag from a fixed list of values (for a
// comma-separated flag, the part after the last comma).
func fixedCompletion(values []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		prefix := ""
		if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
			prefix = toComplete[:i+1]
		}
		out := make([]string, 0, len(values))
		for _, v := range values {
			out = append(out, prefix+v)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// attachFiles gives the positional files to the --from-* flag that was
// used: `--from-log /var/log/asterisk/security*` expands, in the shell, to
// one flag followed by several files.
func attachFiles(o *Options, args []string) error {
	if len(args) == 0 {
		return nil
	}
	switch {
	case len(o.FromLog) > 0 && len(o.FromAMI) > 0:
		return cliexit.Usagef("sources: %q: with both --from-log and --from-ami, name each file with its flag", args[0])
	case len(o.FromLog) > 0:
		o.FromLog = append(o.FromLog, args...)
	case len(o.FromAMI) > 0:
		o.FromAMI = append(o.FromAMI, args...)
	default:
		return cliexit.Usagef("sources: unexpected argument %q: to read logs, use --from-log FILE... (e.g. --from-log /var/log/asterisk/security*)", args[0])
	}
	return nil
}

// Run runs the command.
func Run(ctx context.Context, cmd *cobra.Command, o Options, args []string, env Env) error {
	if err := attachFiles(&o, args); err != nil {
		return err
	}
	offline := len(o.FromLog) > 0 || len(o.FromAMI) > 0
	ropts, err := o.reportOptions(time.Now())
	if err != nil {
		return err
	}
	if o.Width < 0 || o.Limit < 0 || o.MinFailures < 0 {
		return cliexit.Usagef("sources: --width, --limit and --min-failures must not be negative")
	}
	// Offline needs no config: a missing or unreadable default file means
	// built-in defaults; an explicit --config must load.
	cfg, err := env.LoadConfig(cmd)
	if err != nil {
		if !offline || cmd.Flags().Changed("config") {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "sipsentry: warning: %v; using built-in defaults\n", err)
		cfg = config.Default()
	}
	if err := applyGeoFlags(cmd, &cfg.Geo, o); err != nil {
		return err
	}
	log := quietLogger(cmd.ErrOrStderr())
	gdb, err := geo.Open(geoconf.Options(cfg.Geo, cfg.StateDir), log)
	if err != nil {
		return cliexit.UsageError{Err: err}
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
	gi.StaticAllow, err = staticAllow(cfg)
	if err != nil {
		return err
	}
	gi.Enforce = cfg.Firewall.Mode == "enforce"
	gi.GeoMode = cfg.Engine.GeoMode

	var inputs []report.Input
	var footer []string
	if offline {
		inputs, footer, err = readOffline(o)
	} else {
		inputs, err = readLive(ctx, o, cfg, env)
	}
	if err != nil {
		return err
	}
	rep := report.Build(inputs, gdb, gi)
	if err := rep.Apply(ropts); err != nil {
		return cliexit.UsageError{Err: err}
	}
	out := cmd.OutOrStdout()
	switch {
	case o.JSON:
		err = report.WriteJSON(out, rep)
	case o.CSV:
		err = report.WriteCSV(out, rep)
	default:
		width := o.Width
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

// quietLogger shows geo's warnings (a list that did not parse) as plain
// lines, without the info chatter a one-shot report does not need.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

func applyGeoFlags(cmd *cobra.Command, c *config.Geo, o Options) error {
	fl := cmd.Flags()
	if fl.Changed("mmdb") {
		c.MMDB = o.MMDB
	}
	if fl.Changed("asn-mmdb") {
		c.ASNMMDB = o.ASNMMDB
	}
	if fl.Changed("lists-dir") {
		c.ListsDir = o.ListsDir
	}
	if fl.Changed("allow") {
		c.AllowCountries = nil
		for _, cc := range o.Allow {
			cc = strings.ToUpper(strings.TrimSpace(cc))
			if cc == "" {
				continue
			}
			if !config.IsCountryCode(cc) {
				return cliexit.Usagef("--allow: unknown country code %q: want ISO 3166-1 alpha-2 codes such as JP,DE", cc)
			}
			c.AllowCountries = append(c.AllowCountries, cc)
		}
	}
	return nil
}

func (o Options) reportOptions(now time.Time) (report.Options, error) {
	ro := report.Options{Statuses: o.Statuses, MinFailures: o.MinFailures, Sort: o.Sort, Limit: o.Limit}
	if o.Dropped {
		ro.Statuses = append(slices.Clip(ro.Statuses), report.StatusDropped)
	}
	for _, cc := range o.Countries {
		cc = strings.ToUpper(strings.TrimSpace(cc))
		if cc == "" {
			continue
		}
		if cc != "?" && !config.IsCountryCode(cc) {
			return ro, cliexit.Usagef("sources: --country: unknown country code %q: want ISO 3166-1 alpha-2 codes such as JP,DE", cc)
		}
		ro.Countries = append(ro.Countries, cc)
	}
	if o.Since != "" {
		t, err := ParseSince(o.Since, now)
		if err != nil {
			return ro, cliexit.UsageError{Err: err}
		}
		ro.Since = t
	}
	return ro, nil
}

// ParseSince accepts a duration back from now ("90m", "24h", "7d") or an
// absolute time (RFC 3339, "2006-01-02 15:04", "2006-01-02"; UTC unless
// the value says otherwise).
func ParseSince(s string, now time.Time) (time.Time, error) {
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
func readOffline(o Options) ([]report.Input, []string, error) {
	agg := report.NewAggregator()
	var footer []string
	for _, path := range o.FromLog {
		line, err := readLog(path, agg)
		if err != nil {
			return nil, nil, err
		}
		footer = append(footer, line...)
	}
	for _, path := range o.FromAMI {
		line, err := readAMICapture(path, agg)
		if err != nil {
			return nil, nil, err
		}
		footer = append(footer, line)
	}
	return agg.Inputs(), footer, nil
}

func readLog(path string, agg *report.Aggregator) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, openError("--from-log", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, cliexit.Usagef("sources: --from-log %s: a directory; name the log files (e.g. %s/security*)", path, strings.TrimRight(path, "/"))
	}
	r := seclog.NewReader(f)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("sources: %s: %w", path, err)
		}
		agg.Add(&ev)
	}
	st := r.Stats()
	line := fmt.Sprintf("%s: %d lines, %d events, %d garbage", path, st.Lines, st.Events, st.Garbage)
	if st.Garbage > 0 {
		line += fmt.Sprintf(" (first at line %d)", st.FirstGarbageLine)
	}
	if st.Suspicious > 0 {
		line += fmt.Sprintf(", %d with injection evidence", st.Suspicious)
	}
	out := []string{line}
	if st.Events == 0 && st.Lines > 0 {
		out = append(out, fmt.Sprintf("%s: no security events found: is this the file of logger.conf's `security => security` channel?", path))
	}
	return out, nil
}

func openError(flag, path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return cliexit.Usagef("sources: %s %s: no such file", flag, path)
	}
	return cliexit.Usagef("sources: %s %s: %v", flag, path, err)
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
		if m.Get("Event") == "ContactList" {
			// A registration's user agent (PJSIPShowContacts), kept for
			// the address it registered from.
			if c, err := ami.ParseContact(&m); err == nil {
				if via, ok := c.Via(); ok {
					agg.AddContact(via.Addr(), c.UserAgent)
				}
			}
			continue
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
func readLive(ctx context.Context, o Options, cfg *config.Config, env Env) ([]report.Input, error) {
	if env.ReadDB == nil {
		return nil, cliexit.Usagef("sources: this build reads logs only: give --from-log FILE... (or --from-ami FILE...); the daemon's DB is read by `sipsentry sources`")
	}
	path := o.DB
	if path == "" {
		path = env.DBPath(cfg.StateDir)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, cliexit.Usagef("sources: no state DB at %s: is the daemon running with state_dir = %q? To analyse logs instead: %s --from-log /var/log/asterisk/security*", path, cfg.StateDir, env.Prog)
		}
		return nil, cliexit.Usagef("sources: %s: %v", path, err)
	}
	return env.ReadDB(ctx, path)
}

// staticAllow is firewall.allow as prefixes.
func staticAllow(cfg *config.Config) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cfg.Firewall.Allow))
	for _, p := range cfg.Firewall.Allow {
		out = append(out, p.Prefix)
	}
	return out, nil
}
