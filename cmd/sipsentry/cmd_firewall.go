package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/daemon"
	"github.com/sipsentry/sipsentry/internal/geoconf"
)

func newFirewallCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firewall",
		Short: "Set up, remove or show sipsentry's sets and rules in the kernel",
		Long: `sipsentry keeps per-family ipsets (allow, ban, allow-cc) and one iptables
chain (firewall.chain, default SIPSENTRY) that INPUT jumps to for the protected
ports only. It never touches chains, rules or sets it did not create.

With firewall.backend = "dry-run" these commands print what they would do.`,
	}
	cmd.AddCommand(newFirewallUpCommand(g), newFirewallDownCommand(g), newFirewallShowCommand(g))
	return cmd
}

// fwSession is a loaded config with its firewall backend.
type fwSession struct {
	cfg *config.Config
	log *slog.Logger
	fw  firewall.Backend
}

// openFirewall loads the config (built-in defaults when the default file is
// absent) and opens the backend it names; a dry-run backend prints each
// operation to the command's stdout.
func openFirewall(cmd *cobra.Command, g *globalOptions) (*fwSession, error) {
	cfg, err := g.loadConfig(cmd, true)
	if err != nil {
		return nil, err
	}
	log := g.logger(cfg)
	fw, err := daemon.OpenFirewall(cfg.Firewall, log, cmd.OutOrStdout())
	if err != nil {
		return nil, err
	}
	return &fwSession{cfg: cfg, log: log, fw: fw}, nil
}

// fwError turns an invalid entry into a usage error (exit 2): nothing was
// changed and the fix is in the input.
func fwError(err error) error {
	if errors.Is(err, firewall.ErrInvalid) {
		return usageError{err}
	}
	return err
}

func modeText(f config.Firewall) string {
	switch {
	case f.Mode == "monitor":
		return "monitor (nothing dropped; would-be drops are logged and counted)"
	case f.GeoDrop:
		return "enforce (bans dropped; sources outside the allowed countries dropped)"
	default:
		return "enforce (bans dropped; every country reaches the ports: engine.geo_mode is not drop)"
	}
}

func newFirewallUpCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Create the sets, fill the allowed-country set, then install the rules",
		Long: `Create sipsentry's sets and static allow entries (firewall.allow), load the
allowed countries' prefixes from the cached lists, and only then install the
chain and the INPUT jumps, so no allowed phone is dropped while it starts.
Running it again corrects what differs (mode, ports) and changes nothing else.

It refuses, changing nothing, when a set or chain of sipsentry's names exists
but was not made by sipsentry, and in enforce mode with geo_mode = "drop" when
no allowed-country list is available (that would lock every phone out).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFirewallUp(cmd.Context(), cmd, g) },
	}
}

func runFirewallUp(ctx context.Context, cmd *cobra.Command, g *globalOptions) error {
	s, err := openFirewall(cmd, g)
	if err != nil {
		return err
	}
	defer s.fw.Close()
	cc, err := allowedCountryEntries(s.cfg, s.log)
	if err != nil {
		return err
	}
	// firewall.allow's CIDRs go in (next to what a daemon may hold) before
	// any DROP rule; the daemon's next start makes the allow set exact.
	fills := []firewall.Fill{{Set: firewall.SetAllow, Entries: daemon.FirewallStaticAllows(s.cfg.Firewall), Merge: true}}
	if cc != nil {
		fills = append(fills, firewall.Fill{Set: firewall.SetAllowCountry, Entries: cc})
	}
	if err := firewall.UpFilled(ctx, s.fw, fills...); err != nil {
		return fmt.Errorf("firewall up: %w", err)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "firewall up: backend %s, chain %s, mode %s\n", s.cfg.Firewall.Backend, s.cfg.Firewall.Chain, modeText(s.cfg.Firewall))
	if cc != nil {
		fmt.Fprintf(out, "allowed countries %v: %d prefixes loaded\n", s.cfg.Geo.AllowCountries, len(cc))
	}
	return nil
}

// allowedCountryEntries reads the allowed countries' prefixes from the
// cached lists. nil means "leave the allow-cc set as it is".
func allowedCountryEntries(cfg *config.Config, log *slog.Logger) ([]firewall.Entry, error) {
	if len(cfg.Geo.AllowCountries) == 0 {
		return nil, nil
	}
	dropping := cfg.Firewall.Mode == "enforce" && cfg.Firewall.GeoDrop
	gg, err := geo.Open(geoconf.Options(cfg.Geo, cfg.StateDir), log)
	var ps []netip.Prefix
	if err == nil {
		ps = gg.AllowedPrefixes()
	}
	if len(ps) == 0 {
		why := "no prefix in the cached lists"
		if err != nil {
			why = err.Error()
		}
		if dropping {
			return nil, fmt.Errorf("firewall up: refusing to drop by country with no allowed-country prefixes (%s): every phone would be locked out; run `sipsentry lists update` first", why)
		}
		log.Warn("firewall up: allowed-country set left as it is", "reason", why)
		return nil, nil
	}
	es := make([]firewall.Entry, len(ps))
	for i, p := range ps {
		es[i] = firewall.Entry{Prefix: p}
	}
	return es, nil
}

func newFirewallDownCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove exactly what `firewall up` made (jumps, chain, sets)",
		Long: `Remove sipsentry's INPUT jumps, its chain and its sets, and nothing else:
other chains, rules and sets (fail2ban's, Docker's, the admin's) stay. Bans
held in the kernel are lost; the daemon restores them from its state at its
next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openFirewall(cmd, g)
			if err != nil {
				return err
			}
			defer s.fw.Close()
			if err := s.fw.Down(cmd.Context()); err != nil {
				return fmt.Errorf("firewall down: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "firewall down: chain %s and sipsentry's sets removed\n", s.cfg.Firewall.Chain)
			return nil
		},
	}
}

type firewallShowOptions struct{ json bool }

func newFirewallShowCommand(g *globalOptions) *cobra.Command {
	o := &firewallShowOptions{}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show mode, rules with packet counters and set sizes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openFirewall(cmd, g)
			if err != nil {
				return err
			}
			defer s.fw.Close()
			st, err := s.fw.Status(cmd.Context())
			if err != nil {
				return fmt.Errorf("firewall show: %w", err)
			}
			return printFirewallStatus(cmd.OutOrStdout(), st, s.cfg.Firewall, o.json)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

func printFirewallStatus(w io.Writer, st firewall.Status, cfg config.Firewall, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	state := "down"
	if st.Up {
		state = "up"
	}
	fmt.Fprintf(w, "backend  %s\nstate    %s\nmode     %s\n", st.Backend, state, modeText(cfg))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(st.Rules) > 0 {
		fmt.Fprintln(tw, "\nFAMILY\tPACKETS\tBYTES\tRULE")
		for _, r := range st.Rules {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Family, r.Packets, r.Bytes, r.Spec)
		}
	}
	if len(st.Sets) > 0 {
		fmt.Fprintln(tw, "\nSET\tFAMILY\tENTRIES\tMAXELEM\tMEMORY")
		for _, s := range st.Sets {
			mem := "-"
			if s.Memory > 0 {
				mem = fmt.Sprintf("%d B", s.Memory)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", s.Set, s.Family, s.Entries, s.MaxElem, mem)
		}
	}
	return tw.Flush()
}

// parseFor reads a --for value ("90s", "1h", "7d"; 0 = no timeout).
func parseFor(s string) (time.Duration, error) {
	var d config.Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		return 0, usagef("--for: %v", err)
	}
	return d.D(), nil
}

// singleAddr parses an address for ban/unban (a /32 or /128 is accepted).
func singleAddr(s string) (netip.Addr, error) {
	p, err := config.ParsePrefix(s)
	if err != nil {
		return netip.Addr{}, usageError{err}
	}
	if p.Bits() != p.Addr().BitLen() {
		return netip.Addr{}, usagef("%s is a network: the ban set takes single addresses", s)
	}
	return p.Addr(), nil
}
