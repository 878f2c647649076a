package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/daemon"
)

func newAMICommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ami",
		Short: "Talk to Asterisk's manager interface (AMI) with the config's account",
	}
	cmd.AddCommand(newAMITailCommand(g))
	return cmd
}

type amiTailOptions struct {
	json bool
}

func newAMITailCommand(g *globalOptions) *cobra.Command {
	var o amiTailOptions
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print Asterisk's security events live, one line (or JSON object) each",
		Long: `Tail logs in to AMI with the [ami] account of the config file and prints every
security event as it arrives: time, event, service, account, source ip:port
and transport, or with --json one object per line (keys time, event, service,
account, session, transport, ip, port, local, severity, the event-specific
fields in snake_case, and suspicion when the event carries evidence of header
injection).

The account needs read=security (manager.conf); no write permission. Wrong
credentials end the command with exit code 1; an unreachable Asterisk is
retried with backoff until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAMITail(cmd.Context(), o, g, cmd)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON object per line")
	return cmd
}

func runAMITail(ctx context.Context, o amiTailOptions, g *globalOptions, cmd *cobra.Command) error {
	cfg, err := g.loadConfig(cmd, false)
	if err != nil {
		return err
	}
	secret, err := cfg.AMISecret()
	if err != nil {
		if errors.Is(err, config.ErrInsecure) {
			return usageError{err}
		}
		return err
	}
	log := g.logger(cfg)
	cc, err := daemon.AMIClientConfig(cfg, secret, log)
	if errors.Is(err, daemon.ErrConfig) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	cc.OnMessage = func(m ami.Message) {
		if !ami.IsSecurityEvent(&m) {
			return
		}
		ev, err := ami.ParseSecurityEvent(&m)
		if err != nil && !errors.Is(err, ami.ErrNoSource) {
			log.Warn("ami tail: skipping a message", "err", err)
			return
		}
		if o.json {
			err = printEventJSON(out, &ev)
		} else {
			err = printEventLine(out, &ev)
		}
		if err != nil {
			log.Warn("ami tail: writing output", "err", err)
		}
	}
	cc.OnConnect = func(context.Context, *ami.Client) error {
		log.Info("ami tail: connected; waiting for security events", "address", cfg.AMI.Address)
		return nil
	}
	return ami.NewClient(cc).Run(ctx)
}

const eventTimeLayout = "2006-01-02T15:04:05.000Z07:00"

func eventTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(eventTimeLayout)
}

// printEventLine writes one aligned line. The account comes from the
// attacker (From user, URL-decoded, may hold CR LF or escape codes), so it is
// quoted, never printed raw.
func printEventLine(w io.Writer, ev *ami.SecurityEvent) error {
	src := "-"
	if ev.Remote.IsValid() {
		src = ev.Remote.AddrPort.String()
	}
	t := eventTime(ev.Time)
	if t == "" {
		t = "-"
	}
	line := fmt.Sprintf("%-24s %-23s %-6s %-20s %-22s %s", t, ev.Type, ev.Service,
		strconv.Quote(ev.AccountID), src, ev.Remote.Transport)
	if ev.Suspicion != "" {
		line += "  SUSPICIOUS: " + strconv.Quote(ev.Suspicion)
	}
	_, err := fmt.Fprintln(w, strings.TrimRight(line, " "))
	return err
}

// printEventJSON writes one object; the fixed keys win over an
// event-specific field of the same snake_case name.
func printEventJSON(w io.Writer, ev *ami.SecurityEvent) error {
	obj := map[string]any{}
	for _, f := range ev.Fields {
		k := snakeCase(f.Key)
		if _, dup := obj[k]; !dup {
			obj[k] = f.Value
		}
	}
	if !ev.SessionTV.IsZero() {
		obj["session_tv"] = eventTime(ev.SessionTV)
	}
	ip, port := "", 0
	if ev.Remote.IsValid() {
		ip, port = ev.Remote.Addr().String(), int(ev.Remote.AddrPort.Port())
	}
	local := ""
	if ev.Local.IsValid() {
		local = ev.Local.AddrPort.String()
	}
	for k, v := range map[string]any{
		"time": eventTime(ev.Time), "event": ev.Type, "service": ev.Service, "account": ev.AccountID,
		"session": ev.SessionID, "transport": ev.Remote.Transport, "ip": ip, "port": port,
		"local": local, "severity": ev.Severity,
	} {
		obj[k] = v
	}
	if ev.Suspicion != "" {
		obj["suspicion"] = ev.Suspicion
	}
	// Encode writes one line; no HTML escaping, so "<unknown>" stays readable.
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(obj)
}

// snakeCase turns Asterisk's header names into JSON keys:
// ExpectedResponse → expected_response, ACLName → acl_name.
func snakeCase(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			nextLower := i > 0 && i+1 < len(r) && unicode.IsUpper(r[i-1]) && unicode.IsLower(r[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
