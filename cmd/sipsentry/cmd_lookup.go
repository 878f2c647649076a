package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/geoconf"
)

type lookupOptions struct {
	json      bool
	mmdb      string
	asnMMDB   string
	listsDir  string
	countries []string
}

func newLookupCommand(g *globalOptions) *cobra.Command {
	var o lookupOptions
	cmd := &cobra.Command{
		Use:   "lookup IP...",
		Short: "Cross-check addresses: country by MaxMind DB and by the country lists, ASN, allowed or not",
		Long: `Lookup shows, for each address, the country the MaxMind DB gives, the
country whose list holds it, whether that is an allowed country, the ASN and
organisation (with geo.asn_mmdb), and whether the two sources disagree.

"?" in the mmdb column means no country database is loaded; "-" means the
database has no country for the address. It works without a config file
(built-in defaults) and the flags override the [geo] settings, e.g.:

  sipsentry lookup --mmdb dbip-country.mmdb --lists-dir ./lists 133.242.0.1`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("lookup: give one or more IP addresses, e.g. sipsentry lookup 203.0.113.7")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLookup(cmd.Context(), cmd, o, g, args)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print a JSON array")
	f.StringVar(&o.mmdb, "mmdb", "", "country MaxMind DB `FILE` (overrides geo.mmdb)")
	f.StringVar(&o.asnMMDB, "asn-mmdb", "", "ASN MaxMind DB `FILE` (overrides geo.asn_mmdb)")
	f.StringVar(&o.listsDir, "lists-dir", "", "`DIR` of <cc>-ipv4.txt/<cc>-ipv6.txt lists (overrides geo.lists_dir)")
	f.StringSliceVar(&o.countries, "allow", nil, "allowed country `CODES`, comma-separated (overrides geo.allow_countries)")
	return cmd
}

func runLookup(_ context.Context, cmd *cobra.Command, o lookupOptions, g *globalOptions, args []string) error {
	// A bad argument is reported after the others are looked up, not
	// instead of them.
	addrs := make([]netip.Addr, 0, len(args))
	var bad []string
	for _, a := range args {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil || ip.Zone() != "" {
			bad = append(bad, fmt.Sprintf("%q is not an IPv4 or IPv6 address", a))
			continue
		}
		addrs = append(addrs, ip.Unmap())
	}
	badErr := func() error {
		if len(bad) == 0 {
			return nil
		}
		return usagef("lookup: %s", strings.Join(bad, "; "))
	}
	if len(addrs) == 0 {
		return badErr()
	}
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		return err
	}
	if err := applyGeoFlags(cmd, &cfg.Geo, o.mmdb, o.asnMMDB, o.listsDir, o.countries); err != nil {
		return err
	}
	// geoconf's options write nothing: a lookup never changes the daemon's
	// state. geo's log lines would repeat the notes printed after the table.
	gdb, err := geo.Open(geoconf.Options(cfg.Geo, cfg.StateDir), nil)
	if err != nil {
		return usageError{err}
	}
	vs := make([]geo.Verdict, len(addrs))
	for i, a := range addrs {
		vs[i] = gdb.Lookup(a)
	}
	out := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(vs); err != nil {
			return err
		}
	} else if err := printVerdicts(out, vs); err != nil {
		return err
	}
	// What the answers rest on, after the table (stderr: stdout stays the
	// table or the JSON).
	for _, l := range loadedData(gdb, cfg) {
		fmt.Fprintln(cmd.ErrOrStderr(), l)
	}
	return badErr()
}

// loadedData says which lists and databases the lookup used, and why a
// column can only say "?" or "-".
func loadedData(gdb *geo.Geo, cfg *config.Config) []string {
	var out []string
	var names []string
	for _, l := range gdb.Lists() {
		names = append(names, fmt.Sprintf("%s (%d)", l.Name, l.Entries))
	}
	where := filepath.Join(cfg.StateDir, "lists")
	if cfg.Geo.ListsDir != "" {
		where = cfg.Geo.ListsDir
	}
	switch {
	case len(names) > 0:
		out = append(out, fmt.Sprintf("lists: %s from %s", strings.Join(names, ", "), where))
	case len(cfg.Geo.AllowCountries) == 0 && cfg.Geo.ListsDir == "":
		out = append(out, "lists: none: geo.allow_countries is empty and geo.lists_dir is not set (or use --allow / --lists-dir), so LIST is \"-\" and ALLOWED \"no\"")
	case cfg.Geo.ListsDir != "":
		out = append(out, fmt.Sprintf("lists: none usable in %s (<cc>-ipv4.txt / <cc>-ipv6.txt), so LIST is \"-\" and ALLOWED \"no\"", where))
	default:
		out = append(out, fmt.Sprintf("lists: none downloaded yet in %s (sipsentry lists update), so LIST is \"-\" and ALLOWED \"no\"", where))
	}
	for _, p := range gdb.Health() {
		if len(names) == 0 && p.Check == geo.CheckMissing {
			continue // said above
		}
		out = append(out, "lists: "+p.String())
	}
	dbs := map[string]geo.DBInfo{}
	for _, d := range gdb.Databases() {
		dbs[d.Setting] = d
	}
	for _, k := range []struct{ setting, flag, col string }{{"geo.mmdb", "--mmdb", "MMDB is \"?\""}, {"geo.asn_mmdb", "--asn-mmdb", "ASN and ORG are \"-\""}} {
		d, ok := dbs[k.setting]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: not set (or use %s), so %s", k.setting, k.flag, k.col))
		case !d.Loaded:
			out = append(out, fmt.Sprintf("%s: %s is missing, so %s", k.setting, d.Path, k.col))
		default:
			out = append(out, fmt.Sprintf("%s: %s (%s, built %s)", k.setting, d.Path, d.DatabaseType, d.Built.Format("2006-01-02")))
		}
	}
	return out
}

// applyGeoFlags lets ad-hoc flags override the [geo] table.
func applyGeoFlags(cmd *cobra.Command, c *config.Geo, mmdb, asn, listsDir string, countries []string) error {
	fl := cmd.Flags()
	if fl.Changed("mmdb") {
		c.MMDB = mmdb
	}
	if fl.Changed("asn-mmdb") {
		c.ASNMMDB = asn
	}
	if fl.Changed("lists-dir") {
		c.ListsDir = listsDir
	}
	if fl.Changed("allow") {
		c.AllowCountries = nil
		for _, cc := range countries {
			cc = strings.ToUpper(strings.TrimSpace(cc))
			if cc == "" {
				continue
			}
			if !config.IsCountryCode(cc) {
				return usagef("--allow: unknown country code %q: want ISO 3166-1 alpha-2 codes such as JP,DE", cc)
			}
			c.AllowCountries = append(c.AllowCountries, cc)
		}
	}
	return nil
}

func printVerdicts(w io.Writer, vs []geo.Verdict) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tMMDB\tLIST\tALLOWED\tASN\tORG\tDISAGREE")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, v := range vs {
		asn := "-"
		if v.ASN != 0 {
			asn = "AS" + strconv.FormatUint(uint64(v.ASN), 10)
		}
		yes := func(b bool) string {
			if b {
				return "yes"
			}
			return "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.IP, dash(v.MMDBCountry), dash(v.ListCountry),
			yes(v.InAllowed), asn, dash(v.Org), yes(v.Disagree))
	}
	return tw.Flush()
}
