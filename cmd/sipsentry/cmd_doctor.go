package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/doctor"
)

// doctor's checks live in internal/doctor; this file wires the flags and
// prints the results.

type doctorOptions struct {
	json bool
}

func newDoctorCommand(g *globalOptions) *cobra.Command {
	opts := &doctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the installation and say how to fix what is wrong",
		Long: `Check everything sipsentry depends on, each with a verdict (pass, warn,
fail, skip) and one line saying how to fix it:

  config file and its mode, secret files and their modes;
  AMI: loopback or TLS; reachable; login accepted; read=security (the login's own
  SuccessfulAuth event arrives); read=system (the FullyBooted event, which
  Asterisk sends at login only to sessions with read=system); write=system
  (PJSIPShowContacts is allowed); least privilege (ListCommands offers no
  Originate, Command or UpdateConfig);
  ARI, only when [ari] url is set: GET <url>/asterisk/info with basic auth
  (the event websocket is not tested);
  CAP_NET_ADMIN of this process; iptables and ip6tables (and their backend:
  nf_tables or legacy); ipset; kernel modules ip_set, ip_set_hash_ip,
  ip_set_hash_net, xt_set, nf_conntrack, nf_conntrack_netlink (loaded, built
  in per /sys/module or the kernel config, or loadable per modprobe -n);
  sipsentry's chain and sets in the kernel (up, ban set not nearly full, no
  enforced country drop with an empty country set); state directory writable; the allowed countries' lists present and
  confirmed current within 2 x geo.refresh; mmdb build dates within 60 days.

Exit status: 0 when no check failed (warnings allowed), 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env := doctor.SystemEnv(g.configPath, cmd.Flags().Changed("config"))
			return runDoctor(cmd.Context(), opts, env, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print the checks as one JSON object")
	return cmd
}

// errChecksFailed makes the process exit 1 after the report was printed.
var errChecksFailed = errors.New("doctor: at least one check failed (see the fix lines above)")

// runDoctor runs the checks in env and prints them; the error (exit 1) says
// that at least one failed.
func runDoctor(ctx context.Context, opts *doctorOptions, env doctor.Env, out io.Writer) error {
	return printDoctor(out, opts, doctor.Run(ctx, env))
}

func printDoctor(out io.Writer, opts *doctorOptions, results []doctor.Result) error {
	if opts.json {
		if err := printDoctorJSON(out, results); err != nil {
			return err
		}
	} else if err := printDoctorTable(out, results); err != nil {
		return err
	}
	if doctor.Failed(results) {
		return errChecksFailed
	}
	return nil
}

func printDoctorTable(out io.Writer, results []doctor.Result) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(r.Status.String()), r.Name, r.Detail)
		if r.Fix != "" && (r.Status == doctor.Warn || r.Status == doctor.Fail) {
			fmt.Fprintf(tw, "\t\t  fix: %s\n", r.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	n := map[doctor.Status]int{}
	for _, r := range results {
		n[r.Status]++
	}
	_, err := fmt.Fprintf(out, "\n%d pass, %d warn, %d fail, %d skip\n", n[doctor.Pass], n[doctor.Warn], n[doctor.Fail], n[doctor.Skip])
	return err
}

func printDoctorJSON(out io.Writer, results []doctor.Result) error {
	ok := !doctor.Failed(results)
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		OK     bool            `json:"ok"`
		Checks []doctor.Result `json:"checks"`
	}{ok, results})
}
