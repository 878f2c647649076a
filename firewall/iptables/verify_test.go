package iptables

import (
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// desiredWorld is an up firewall with bans (both families), a static
// allow and the allowed countries loaded, and the Desired that says so.
func desiredWorld(t *testing.T, ns *netnstest.NS, mode string, nBans int) (*Backend, firewall.DesiredSets) {
	t.Helper()
	b := newInNS(t, ns, testConfig(mode))
	want := firewall.DesiredSets{
		firewall.SetAllow:        {{Prefix: netip.MustParsePrefix("203.0.113.0/28"), Comment: "static (config)"}},
		firewall.SetAllowCountry: countryEntries(allowedCountry),
	}
	a4, a6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8:9::1")
	for i := range nBans {
		a := a4
		if i%4 == 3 {
			a = a6
			a6 = a6.Next()
		} else {
			a4 = a4.Next()
		}
		want[firewall.SetBan] = append(want[firewall.SetBan],
			firewall.Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: time.Duration(3600+i) * time.Second, Comment: "ban"})
	}
	if err := firewall.UpFilled(ctx, b, firewall.Fill{Set: firewall.SetAllowCountry, Entries: want[firewall.SetAllowCountry]},
		firewall.Fill{Set: firewall.SetAllow, Entries: want[firewall.SetAllow]}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.BulkLoad(ctx, firewall.SetBan, want.Entries(firewall.SetBan)); err != nil {
		t.Fatal(err)
	}
	return b, want
}

var timeLeftRE = regexp.MustCompile(`( timeout )[1-9][0-9]*`)

// snapshotTimeless is snapshot without the members' time left, which
// moves by itself (a permanent member stays "timeout 0"), and with the
// members sorted (a re-created set lists them in another hash order);
// rules keep their order.
func snapshotTimeless(t *testing.T, ns *netnstest.NS) string {
	var rest, members []string
	for _, l := range strings.Split(timeLeftRE.ReplaceAllString(snapshot(t, ns), "${1}>0"), "\n") {
		if strings.HasPrefix(l, "add ") {
			members = append(members, l)
		} else {
			rest = append(rest, l)
		}
	}
	slices.Sort(members)
	return strings.Join(rest, "\n") + "\nmembers:\n" + strings.Join(members, "\n")
}

func mustVerify(t *testing.T, v firewall.Verifier, want firewall.Desired, repair bool) firewall.Drift {
	t.Helper()
	d, err := v.Verify(ctx, want, repair)
	if err != nil {
		t.Fatalf("Verify(repair=%v): %v", repair, err)
	}
	return d
}

func findObject(d firewall.Drift, name string) (firewall.ObjectDrift, bool) {
	for _, o := range d.Objects {
		if o.Object == name {
			return o, true
		}
	}
	return firewall.ObjectDrift{}, false
}

// TestVerifyRepairsKernelDrift: each way the kernel is changed behind the
// daemon's back is seen by one Verify, repaired by it (the namespace is
// as before, timeouts included), and the next Verify finds nothing.
func TestVerifyRepairsKernelDrift(t *testing.T) {
	requireKernel(t)
	cases := []struct {
		name   string
		tamper [][]string
		object string // the object that must be reported repaired
	}{
		{"ipset flush of the ban set", [][]string{{"ipset", "flush", "sipsentry-ban-v4"}}, "ban-v4"},
		{"ipset flush of allow-cc v6", [][]string{{"ipset", "flush", "sipsentry-allow-cc-v6"}}, "allow-cc-v6"},
		{"entry added by hand", [][]string{{"ipset", "add", "sipsentry-ban-v4", "203.0.113.99", "timeout", "0"}}, "ban-v4"},
		{"static allow added by hand", [][]string{{"ipset", "add", "sipsentry-allow-v6", "2001:db8:77::/48"}}, "allow-v6"},
		{"ban timeout changed by hand", [][]string{{"ipset", "-exist", "add", "sipsentry-ban-v4", "198.18.0.1", "timeout", "60"}}, "ban-v4"},
		{"iptables -F SIPSENTRY", [][]string{{"iptables", "-F", "SIPSENTRY"}}, "chain-v4"},
		{"one chain rule deleted", [][]string{{"ip6tables", "-D", "SIPSENTRY", "3"}}, "chain-v6"},
		{"INPUT jump deleted", [][]string{{"iptables", "-D", "INPUT", "-p", "udp", "-m", "multiport", "--dports", "5060,10000:20000",
			"-m", "comment", "--comment", "sipsentry", "-j", "SIPSENTRY"}}, "jump-v4"},
		{"chain and jumps deleted", [][]string{
			{"ip6tables", "-D", "INPUT", "-p", "udp", "-m", "multiport", "--dports", "5060,10000:20000", "-m", "comment", "--comment", "sipsentry", "-j", "SIPSENTRY"},
			{"ip6tables", "-D", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "5060:5061", "-m", "comment", "--comment", "sipsentry", "-j", "SIPSENTRY"},
			{"ip6tables", "-F", "SIPSENTRY"}, {"ip6tables", "-X", "SIPSENTRY"}}, "chain-v6"},
		{"rules flushed and a set destroyed", [][]string{{"ip6tables", "-F", "SIPSENTRY"}, {"ipset", "destroy", "sipsentry-ban-v6"}}, "ban-v6"},
	}
	for _, c := range cases {
		for _, mode := range []string{"enforce", "monitor"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				ns := netnstest.NewNS(t, "vfy")
				foreignState(t, ns)
				b, want := desiredWorld(t, ns, mode, 200)
				if d := mustVerify(t, b, want, false); !d.Clean() {
					t.Fatalf("Verify after up: %s", d)
				}
				before := snapshotTimeless(t, ns)
				for _, cmd := range c.tamper {
					ns.MustExec(cmd[0], cmd[1:]...)
				}
				d := mustVerify(t, b, want, false)
				if o, ok := findObject(d, c.object); !ok || o.Repaired {
					t.Fatalf("Verify without repair: %s; want %s reported, not repaired", d, c.object)
				}
				d = mustVerify(t, b, want, true)
				t.Logf("drift: %s", d)
				if o, ok := findObject(d, c.object); !ok || !o.Repaired {
					t.Fatalf("Verify(repair): %s; want %s repaired", d, c.object)
				}
				for _, o := range d.Objects {
					if !o.Repaired {
						t.Fatalf("object left unrepaired: %s", o)
					}
				}
				if after := snapshotTimeless(t, ns); after != before {
					t.Fatalf("after the repair the namespace differs:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				if d := mustVerify(t, b, want, false); !d.Clean() {
					t.Fatalf("Verify after the repair: %s", d)
				}
				// A ban re-added keeps its time left, not a fresh ban time.
				got, err := b.List(ctx, firewall.SetBan)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want[firewall.SetBan]) {
					t.Fatalf("%d bans after repair, want %d", len(got), len(want[firewall.SetBan]))
				}
				for _, e := range got {
					if e.Timeout < 3590*time.Second || e.Timeout > 3600*time.Second+200*time.Second {
						t.Fatalf("ban %s has %s left after the repair", e.Prefix, e.Timeout)
					}
				}
			})
		}
	}
}

// TestVerifyFirstCheckAndForeign: a backend that did not run Up (doctor,
// a restarted daemon) checks the rules in iptables' words first; a chain
// turned into someone else's is reported with ErrNotOurs and never
// repaired over.
func TestVerifyFirstCheckAndForeign(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "vff")
	_, want := desiredWorld(t, ns, "enforce", 20)
	fresh := newInNS(t, ns, testConfig("enforce"))
	if d := mustVerify(t, fresh, want, false); !d.Clean() {
		t.Fatalf("first Verify of a fresh backend: %s", d)
	}
	// From now on the rules are checked by netlink fingerprints alone.
	for _, fam := range families {
		if g := fresh.golden[fam]; g == nil || g.execOnly || len(g.chain) != len(fresh.chainRules(fam)) || len(g.jumps) != 2 {
			t.Fatalf("%s: fingerprints after a clean first check: %+v", fam, g)
		}
	}
	ns.MustExec("iptables", "-D", "INPUT", "1")
	if d := mustVerify(t, fresh, want, false); d.Clean() {
		t.Fatalf("deleted jump not seen by the netlink check")
	}
	// The chain becomes someone else's: a rule sipsentry never writes.
	ns.MustExec("iptables", "-F", "SIPSENTRY")
	ns.MustExec("iptables", "-A", "SIPSENTRY", "-s", "198.51.100.0/24", "-j", "ACCEPT")
	before := snapshot(t, ns)
	d := mustVerify(t, fresh, want, true)
	o, ok := findObject(d, "chain-v4")
	if !ok || o.Repaired || !errors.Is(o.Refused, firewall.ErrNotOurs) || !strings.Contains(o.Refused.Error(), "iptables -t filter -F SIPSENTRY") {
		t.Fatalf("foreign chain: %s; want chain-v4 refused with ErrNotOurs and the command that resolves it", d)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("Verify(repair) changed a foreign chain:\n%s\n---\n%s", before, after)
	}
}

// TestVerifyNoFalseDriftUnderTraffic: packets through the rules (counters,
// the LOG rules' rate limits) are not drift.
func TestVerifyNoFalseDriftUnderTraffic(t *testing.T) {
	requireKernel(t)
	pbx, al := netnstest.NewNS(t, "vtp"), netnstest.NewNS(t, "vta")
	netnstest.Veth(t, pbx, al, []string{"198.51.100.1/24"}, []string{"198.51.100.10/24"})
	b, want := desiredWorld(t, pbx, "monitor", 10)
	ban := firewall.Entry{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Timeout: time.Hour}
	want[firewall.SetBan] = append(want[firewall.SetBan], ban)
	if err := b.Add(ctx, firewall.SetBan, ban); err != nil {
		t.Fatal(err)
	}
	listen(t, pbx, 5060, true)
	c := dial(t, al, netip.MustParseAddr("198.51.100.10"), netip.MustParseAddrPort("198.51.100.1:5060"))
	for i := range 30 {
		if _, err := c.Write(optionsMsg(c)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if d := mustVerify(t, b, want, false); !d.Clean() {
				t.Fatalf("Verify under traffic: %s", d)
			}
		}
	}
	waitCounter(t, b, "inet", "--match-set sipsentry-ban-v4 src -j RETURN", 0)
	if d := mustVerify(t, b, want, false); !d.Clean() {
		t.Fatalf("Verify after traffic: %s", d)
	}
}

// TestUpAdoptsOwnChain: a chain of sipsentry's name that lost its marker
// is taken over by Up when it is empty or holds only sipsentry-shaped
// rules; the result is the same ruleset as a first up.
func TestUpAdoptsOwnChain(t *testing.T) {
	requireKernel(t)
	cases := []struct {
		name  string
		setup func(ns *netnstest.NS)
	}{
		{"iptables -F SIPSENTRY while up", func(ns *netnstest.NS) {
			ns.MustExec("iptables", "-F", "SIPSENTRY")
			ns.MustExec("ip6tables", "-F", "SIPSENTRY")
		}},
		{"marker rule deleted", func(ns *netnstest.NS) { ns.MustExec("iptables", "-D", "SIPSENTRY", "1") }},
		{"empty chain made by hand", func(ns *netnstest.NS) {
			b := newInNS(t, ns, testConfig("enforce"))
			if err := b.Down(ctx); err != nil {
				t.Fatal(err)
			}
			ns.MustExec("iptables", "-N", "SIPSENTRY")
		}},
		{"monitor rules without marker", func(ns *netnstest.NS) {
			if err := newInNS(t, ns, testConfig("monitor")).Up(ctx); err != nil {
				t.Fatal(err)
			}
			ns.MustExec("ip6tables", "-D", "SIPSENTRY", "1")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := netnstest.NewNS(t, "adopt")
			foreignState(t, ns)
			b := newInNS(t, ns, testConfig("enforce"))
			if err := b.Up(ctx); err != nil {
				t.Fatal(err)
			}
			want := snapshot(t, ns)
			c.setup(ns)
			again := newInNS(t, ns, testConfig("enforce"))
			if err := again.Up(ctx); err != nil {
				t.Fatalf("Up over sipsentry's own chain: %v", err)
			}
			if got := snapshot(t, ns); got != want {
				t.Fatalf("after adoption:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestDownAfterFlush: `firewall down` after `iptables -F SIPSENTRY`
// removes the jumps, then the chain and the sets: the namespace is as
// before the first up.
func TestDownAfterFlush(t *testing.T) {
	requireKernel(t)
	for _, flush := range [][]string{{"iptables"}, {"ip6tables"}, {"iptables", "ip6tables"}} {
		t.Run(fmt.Sprint(flush), func(t *testing.T) {
			ns := netnstest.NewNS(t, "dnf")
			foreignState(t, ns)
			empty := snapshot(t, ns)
			b := newInNS(t, ns, testConfig("enforce"))
			if err := b.Up(ctx); err != nil {
				t.Fatal(err)
			}
			for _, ipt := range flush {
				ns.MustExec(ipt, "-F", "SIPSENTRY")
			}
			// A fresh process, as `sipsentry firewall down` is.
			if err := newInNS(t, ns, testConfig("enforce")).Down(ctx); err != nil {
				t.Fatalf("Down after a flush: %v", err)
			}
			if after := snapshot(t, ns); after != empty {
				t.Fatalf("down left traces:\nbefore up:\n%s\nafter down:\n%s", empty, after)
			}
		})
	}
}

// addingDesired adds a ban to the kernel while Verify iterates the
// desired bans, as the engine may ban between Verify's kernel read and its
// iteration.
type addingDesired struct {
	firewall.DesiredSets
	b     *Backend
	extra firewall.Entry
	t     *testing.T
}

func (a addingDesired) Entries(set firewall.Set) iter.Seq[firewall.Entry] {
	if set != firewall.SetBan {
		return a.DesiredSets.Entries(set)
	}
	return func(yield func(firewall.Entry) bool) {
		if err := a.b.nlAdd(firewall.SetBan, a.extra); err != nil {
			a.t.Error(err)
		}
		if !yield(a.extra) {
			return
		}
		for e := range a.DesiredSets.Entries(set) {
			if !yield(e) {
				return
			}
		}
	}
}

// TestVerifyKeepsBanAddedDuringCheck: a ban that reaches the kernel after
// Verify read it, and the desired state before Verify iterated it, is
// neither removed nor reported as drift.
func TestVerifyKeepsBanAddedDuringCheck(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "vrace")
	b, want := desiredWorld(t, ns, "enforce", 50)
	ban := firewall.Entry{Prefix: netip.MustParsePrefix("203.0.113.200/32"), Timeout: time.Hour, Comment: "during the check"}
	d := mustVerify(t, b, addingDesired{DesiredSets: want, b: b, extra: ban, t: t}, true)
	if !d.Clean() {
		t.Fatalf("a ban added during the check was reported: %s", d)
	}
	in, err := b.Contains(ctx, firewall.SetBan, ban.Prefix.Addr())
	if err != nil || !in {
		t.Fatalf("ban added during the check: in the set %v (%v), want kept", in, err)
	}
}

// TestVerifyForeignSet: a set of sipsentry's name replaced by someone
// else's is reported, never written into, and no rule is made to use it.
func TestVerifyForeignSet(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "vfs")
	b, want := desiredWorld(t, ns, "enforce", 10)
	// Another tool takes the name: chain, jumps and the v6 ban set go.
	ns.MustExec("ip6tables", "-D", "INPUT", "-p", "udp", "-m", "multiport", "--dports", "5060,10000:20000", "-m", "comment", "--comment", "sipsentry", "-j", "SIPSENTRY")
	ns.MustExec("ip6tables", "-D", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "5060:5061", "-m", "comment", "--comment", "sipsentry", "-j", "SIPSENTRY")
	ns.MustExec("ip6tables", "-F", "SIPSENTRY")
	ns.MustExec("ip6tables", "-X", "SIPSENTRY")
	ns.MustExec("ipset", "destroy", "sipsentry-ban-v6")
	ns.MustExec("ipset", "create", "sipsentry-ban-v6", "hash:net", "family", "inet6")
	before := snapshot(t, ns)
	d := mustVerify(t, b, want, true)
	o, ok := findObject(d, "ban-v6")
	if !ok || o.Repaired || !errors.Is(o.Refused, firewall.ErrNotOurs) {
		t.Fatalf("foreign set: %s; want ban-v6 refused with ErrNotOurs", d)
	}
	if c, ok := findObject(d, "chain-v6"); !ok || c.Repaired {
		t.Fatalf("chain-v6 with a foreign set: %s; want reported, not re-created", d)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("Verify(repair) changed the namespace around a foreign set:\n%s\n---\n%s", before, after)
	}
}
