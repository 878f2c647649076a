package iptables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// The test world: a "pbx" namespace with sipsentry's rules and SIP
// listeners, one sender namespace whose addresses the test country list
// puts in the allowed country ZZ, one in the foreign country XX.
var testCountries = map[string][]string{
	"ZZ": {"198.51.100.0/24", "2001:db8:1::/48"},
	"XX": {"203.0.113.0/24", "2001:db8:2::/48"},
}

const allowedCountry = "ZZ"

type famAddrs struct {
	fam                string
	pbxA, allowed      netip.Addr // link to the allowed sender
	pbxB, foreign      netip.Addr // link to the foreign sender
	banRule, allowRule string     // rule spec suffixes
	allowCCRule        string
}

var worlds = []famAddrs{
	{fam: "inet",
		pbxA: netip.MustParseAddr("198.51.100.1"), allowed: netip.MustParseAddr("198.51.100.10"),
		pbxB: netip.MustParseAddr("203.0.113.1"), foreign: netip.MustParseAddr("203.0.113.10"),
		banRule: "--match-set sipsentry-ban-v4 src -j DROP", allowCCRule: "--match-set sipsentry-allow-cc-v4 src -j RETURN"},
	{fam: "inet6",
		pbxA: netip.MustParseAddr("2001:db8:1::1"), allowed: netip.MustParseAddr("2001:db8:1::10"),
		pbxB: netip.MustParseAddr("2001:db8:2::1"), foreign: netip.MustParseAddr("2001:db8:2::10"),
		banRule: "--match-set sipsentry-ban-v6 src -j DROP", allowCCRule: "--match-set sipsentry-allow-cc-v6 src -j RETURN"},
}

const finalDrop = "-A SIPSENTRY -j DROP"

func countryEntries(cc string) []firewall.Entry {
	var es []firewall.Entry
	for _, s := range testCountries[cc] {
		es = append(es, firewall.Entry{Prefix: netip.MustParsePrefix(s), Comment: cc})
	}
	return es
}

// foreignState gives the pbx namespace what an admin's host has: an
// ESTABLISHED accept rule first (so only a conntrack flush can stop an
// established flow), a fail2ban chain and set, a Docker-like chain.
func foreignState(t testing.TB, ns *netnstest.NS) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		ns.MustExec(ipt, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		ns.MustExec(ipt, "-N", "f2b-asterisk")
		ns.MustExec(ipt, "-A", "f2b-asterisk", "-j", "RETURN")
		ns.MustExec(ipt, "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", "f2b-asterisk")
		ns.MustExec(ipt, "-N", "DOCKER-USER")
		ns.MustExec(ipt, "-A", "DOCKER-USER", "-j", "RETURN")
	}
	ns.MustExec("ipset", "create", "f2b-asterisk", "hash:ip", "timeout", "600")
	ns.MustExec("ipset", "add", "f2b-asterisk", "203.0.113.250", "timeout", "0")
	ns.MustExec("iptables", "-I", "f2b-asterisk", "-m", "set", "--match-set", "f2b-asterisk", "src", "-j", "REJECT")
}

func TestKernelPBX(t *testing.T) {
	requireKernel(t)
	pbx, al, fo := netnstest.NewNS(t, "pbx"), netnstest.NewNS(t, "al"), netnstest.NewNS(t, "fo")
	netnstest.Veth(t, pbx, al, []string{"198.51.100.1/24", "2001:db8:1::1/64"}, []string{"198.51.100.10/24", "2001:db8:1::10/64"})
	netnstest.Veth(t, pbx, fo, []string{"203.0.113.1/24", "2001:db8:2::1/64"}, []string{"203.0.113.10/24", "2001:db8:2::10/64"})
	foreignState(t, pbx)
	before := snapshot(t, pbx)

	cfg := testConfig("enforce")
	cfg.InputPosition = 2 // after the admin's ESTABLISHED rule
	b := newInNS(t, pbx, cfg)
	if err := b.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Replace(ctx, firewall.SetAllowCountry, countryEntries(allowedCountry)); err != nil {
		t.Fatal(err)
	}
	sip := listen(t, pbx, 5060, true)
	rtp := listen(t, pbx, 10000, false) // never answers: every packet stays NEW and meets the chain
	us := geoList(t, "us-ipv4-aggregated.txt")

	for _, w := range worlds {
		t.Run(w.fam, func(t *testing.T) {
			alC := dial(t, al, w.allowed, netip.AddrPortFrom(w.pbxA, 5060))
			foC := dial(t, fo, w.foreign, netip.AddrPortFrom(w.pbxB, 5060))

			// The allowed country's OPTIONS are answered.
			mustReach(t, alC, "allowed sender")

			// The foreign country's are dropped by the last rule.
			d0 := counter(t, b, w.fam, finalDrop)
			if _, err := foC.Write(optionsMsg(foC)); err != nil {
				t.Fatal(err)
			}
			waitCounter(t, b, w.fam, finalDrop, d0)
			if n := sip.count(w.foreign); n != 0 {
				t.Fatalf("listener got %d datagrams from the foreign sender", n)
			}

			// A ban alone does not stop the established flow (the admin's
			// ESTABLISHED rule comes first)...
			ban := firewall.Entry{Prefix: netip.PrefixFrom(w.allowed, w.allowed.BitLen()), Timeout: time.Hour, Comment: "test ban"}
			if err := b.Add(ctx, firewall.SetBan, ban); err != nil {
				t.Fatal(err)
			}
			mustReach(t, alC, "established flow before the conntrack flush (control)")
			// ...the conntrack flush does, at the very next packet.
			if err := b.DropFlows(ctx, w.allowed); err != nil {
				t.Fatal(err)
			}
			got, b0 := sip.count(w.allowed), counter(t, b, w.fam, w.banRule)
			if _, err := alC.Write(optionsMsg(alC)); err != nil {
				t.Fatal(err)
			}
			if n := waitCounter(t, b, w.fam, w.banRule, b0); n != b0+1 {
				t.Fatalf("ban rule counted %d packets, want 1", n-b0)
			}
			if n := sip.count(w.allowed); n != got {
				t.Fatalf("banned sender's first packet after the ban reached the listener")
			}
			if err := b.Delete(ctx, firewall.SetBan, ban.Prefix); err != nil {
				t.Fatal(err)
			}
			mustReach(t, alC, "unbanned sender")

			// The same with DropFlow: the one flow the engine saw, cut by its
			// tuple (a lookup, not a table walk).
			if err := b.Add(ctx, firewall.SetBan, ban); err != nil {
				t.Fatal(err)
			}
			mustReach(t, alC, "established flow before DropFlow (control)")
			remote := netip.MustParseAddrPort(alC.LocalAddr().String())
			if err := b.DropFlow(ctx, "udp", remote, netip.AddrPortFrom(w.pbxA, 5060)); err != nil {
				t.Fatal(err)
			}
			got, b0 = sip.count(w.allowed), counter(t, b, w.fam, w.banRule)
			if _, err := alC.Write(optionsMsg(alC)); err != nil {
				t.Fatal(err)
			}
			if n := waitCounter(t, b, w.fam, w.banRule, b0); n != b0+1 {
				t.Fatalf("ban rule counted %d packets after DropFlow, want 1", n-b0)
			}
			if n := sip.count(w.allowed); n != got {
				t.Fatalf("banned sender's first packet after DropFlow reached the listener")
			}
			if err := b.DropFlow(ctx, "udp", remote, netip.AddrPortFrom(w.pbxA, 5060)); err != nil {
				t.Fatalf("DropFlow of an absent flow: %v", err)
			}
			if err := b.DropFlow(ctx, "sctp", remote, netip.AddrPortFrom(w.pbxA, 5060)); !errors.Is(err, firewall.ErrInvalid) {
				t.Fatalf("DropFlow(sctp) = %v, want ErrInvalid", err)
			}
			if err := b.Delete(ctx, firewall.SetBan, ban.Prefix); err != nil {
				t.Fatal(err)
			}
			mustReach(t, alC, "unbanned sender")

			// An allow entry lets the foreign sender in; removing it (and
			// its flows) shuts it out again.
			allow := netip.PrefixFrom(w.foreign, w.foreign.BitLen())
			if err := b.Add(ctx, firewall.SetAllow, firewall.Entry{Prefix: allow, Timeout: time.Hour, Comment: "push server"}); err != nil {
				t.Fatal(err)
			}
			mustReach(t, foC, "foreign sender with an allow entry")
			if err := b.Delete(ctx, firewall.SetAllow, allow); err != nil {
				t.Fatal(err)
			}
			if err := b.DropFlows(ctx, w.foreign); err != nil {
				t.Fatal(err)
			}
			d1 := counter(t, b, w.fam, finalDrop)
			if _, err := foC.Write(optionsMsg(foC)); err != nil {
				t.Fatal(err)
			}
			waitCounter(t, b, w.fam, finalDrop, d1)

			// Full-set swaps under constant traffic lose no packet.
			rtpC := dial(t, al, w.allowed, netip.AddrPortFrom(w.pbxA, 10000))
			acc0, drop0 := counter(t, b, w.fam, w.allowCCRule), counter(t, b, w.fam, finalDrop)
			big := countryEntries(allowedCountry)
			for _, p := range us {
				big = append(big, firewall.Entry{Prefix: p, Comment: "US"})
			}
			var wg sync.WaitGroup
			stop := make(chan struct{})
			sent := 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := rtpC.Write([]byte("rtp")); err != nil {
						t.Errorf("send: %v", err)
						return
					}
					sent++
					if sent%20 == 0 {
						time.Sleep(time.Millisecond) // stay under the receiver's pace
					}
				}
			}()
			for i := range 6 {
				es := countryEntries(allowedCountry)
				if i%2 == 0 {
					es = big
				}
				if err := b.Replace(ctx, firewall.SetAllowCountry, es); err != nil {
					t.Error(err)
				}
			}
			close(stop)
			wg.Wait()
			if sent < 100 {
				t.Fatalf("only %d packets sent during the swaps", sent)
			}
			deadline := time.Now().Add(10 * time.Second)
			for counter(t, b, w.fam, w.allowCCRule)-acc0 < uint64(sent) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			acc, drop := counter(t, b, w.fam, w.allowCCRule)-acc0, counter(t, b, w.fam, finalDrop)-drop0
			t.Logf("%s: %d packets during 6 full swaps (3 to %d prefixes, 3 back to 2): %d accepted by allow-cc, %d dropped", w.fam, sent, len(big), acc, drop)
			if drop != 0 || acc != uint64(sent) {
				t.Fatalf("during swaps: sent %d, accepted %d, dropped %d: want all accepted", sent, acc, drop)
			}
			for rtp.count(w.allowed) < sent && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := rtp.count(w.allowed); n != sent {
				t.Fatalf("listener received %d of %d packets sent during the swaps", n, sent)
			}
		})
	}

	if err := b.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, pbx); after != before {
		t.Fatalf("down did not restore the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestUpIdempotentAndModeChange(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "idem")
	foreignState(t, ns)
	empty := snapshot(t, ns)
	// The static allows are the caller's desired state (the backend adds
	// none of its own): each up below loads the allow set it is given.
	static := []firewall.Entry{{Prefix: netip.MustParsePrefix("203.0.113.0/28"), Comment: "static (config)"}}
	upAllow := func(b *Backend, allow []firewall.Entry) error {
		return firewall.UpFilled(ctx, b, firewall.Fill{Set: firewall.SetAllow, Entries: allow})
	}
	cfg := testConfig("enforce")
	enf := newInNS(t, ns, cfg)
	if err := upAllow(enf, static); err != nil {
		t.Fatal(err)
	}
	up1 := snapshot(t, ns)
	if err := upAllow(enf, static); err != nil {
		t.Fatal(err)
	}
	if up2 := snapshot(t, ns); up2 != up1 {
		t.Fatalf("second up changed the ruleset:\n%s\n---\n%s", up1, up2)
	}
	for _, want := range []string{
		"-A INPUT -p udp -m multiport --dports 5060,10000:20000 -m comment --comment sipsentry -j SIPSENTRY",
		"-A INPUT -p tcp -m multiport --dports 5060:5061 -m comment --comment sipsentry -j SIPSENTRY",
		finalDrop,
		`add sipsentry-allow-v4 203.0.113.0/28 timeout 0 comment "static (config)"`,
	} {
		if !strings.Contains(up1, want) {
			t.Errorf("after up the namespace lacks %q:\n%s", want, up1)
		}
	}
	// input_position 1: our jumps come before the admin's rules.
	if i, j := strings.Index(up1, "-j SIPSENTRY"), strings.Index(up1, "--ctstate RELATED,ESTABLISHED"); i < 0 || j < 0 || i > j {
		t.Errorf("jump not at input_position 1:\n%s", up1)
	}

	mon := newInNS(t, ns, testConfig("monitor"))
	if err := upAllow(mon, nil); err != nil {
		t.Fatal(err)
	}
	m := snapshot(t, ns)
	if strings.Contains(m, "-j DROP") || !strings.Contains(m, `-j LOG --log-prefix "sipsentry-would-drop: "`) ||
		!strings.Contains(m, `-m set --match-set sipsentry-ban-v4 src -m limit --limit 6/min -j LOG --log-prefix "sipsentry-would-ban: "`) ||
		!strings.Contains(m, "-A SIPSENTRY -j RETURN") {
		t.Fatalf("monitor ruleset wrong (must drop nothing, log what it would):\n%s", m)
	}
	// enforce with geo_mode strict/monitor: bans drop, other countries pass.
	strict := testConfig("enforce")
	strict.GeoDrop = false
	if err := newInNS(t, ns, strict).Up(ctx); err != nil {
		t.Fatal(err)
	}
	s := snapshot(t, ns)
	if strings.Contains(s, finalDrop) || !strings.Contains(s, "-A SIPSENTRY -m set --match-set sipsentry-ban-v6 src -j DROP") || !strings.Contains(s, "-A SIPSENTRY -j RETURN") {
		t.Fatalf("enforce without geo drop: want ban DROP and a final RETURN:\n%s", s)
	}
	if strings.Contains(m, "203.0.113.0/28") {
		t.Fatalf("static allow entry removed from the config is still in the set:\n%s", m)
	}
	if err := upAllow(enf, nil); err != nil {
		t.Fatal(err)
	}
	enf2 := newInNS(t, ns, testConfig("enforce"))
	if err := upAllow(enf2, static); err != nil {
		t.Fatal(err)
	}
	if back := snapshot(t, ns); back != up1 {
		t.Fatalf("enforce → monitor → enforce differs from the first up:\n%s\n---\n%s", up1, back)
	}
	if err := enf2.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, ns); after != empty {
		t.Fatalf("down left traces:\nbefore up:\n%s\nafter down:\n%s", empty, after)
	}
}

func TestForeignObjectsRefused(t *testing.T) {
	requireKernel(t)
	cases := []struct {
		name  string
		setup [][]string
	}{
		{"set of another type", [][]string{{"ipset", "create", "sipsentry-ban-v4", "hash:net"}}},
		{"set without comments", [][]string{{"ipset", "create", "sipsentry-allow-v6", "hash:net", "family", "inet6", "timeout", "0"}}},
		{"set of another family", [][]string{{"ipset", "create", "sipsentry-allow-cc-v4", "hash:net", "family", "inet6", "comment"}}},
		{"chain without marker", [][]string{{"ip6tables", "-N", "SIPSENTRY"}, {"ip6tables", "-A", "SIPSENTRY", "-j", "RETURN"}}},
		{"chain with a foreign rule next to sipsentry's", [][]string{{"iptables", "-N", "SIPSENTRY"},
			{"iptables", "-A", "SIPSENTRY", "-m", "set", "--match-set", "f2b-asterisk", "src", "-j", "DROP"}}},
		// An empty chain of sipsentry's name is no longer refused: #10 asks
		// for adoption (TestUpAdoptsOwnChain "empty chain made by hand").
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := netnstest.NewNS(t, "fgn")
			foreignState(t, ns)
			for _, cmd := range c.setup {
				ns.MustExec(cmd[0], cmd[1:]...)
			}
			before := snapshot(t, ns)
			b := newInNS(t, ns, testConfig("enforce"))
			err := b.Up(ctx)
			if !errors.Is(err, firewall.ErrNotOurs) {
				t.Fatalf("Up = %v, want ErrNotOurs", err)
			}
			t.Logf("message: %v", err)
			if strings.Contains(c.name, "chain") && !strings.Contains(err.Error(), "-t filter -F SIPSENTRY") {
				t.Errorf("refusal does not name the command that resolves it: %v", err)
			}
			if after := snapshot(t, ns); after != before {
				t.Fatalf("a refused up changed the namespace:\n%s\n---\n%s", before, after)
			}
			if err := b.Down(ctx); !errors.Is(err, firewall.ErrNotOurs) {
				t.Fatalf("Down = %v, want ErrNotOurs (foreign object left in place)", err)
			}
			if after := snapshot(t, ns); after != before {
				t.Fatalf("down removed a foreign object:\n%s\n---\n%s", before, after)
			}
			// Set operations without a successful up never write into a
			// foreign set either.
			for _, set := range firewall.Sets {
				p := netip.MustParsePrefix("198.51.100.1/32")
				_ = b.Add(ctx, set, firewall.Entry{Prefix: p})
				_ = b.Delete(ctx, set, p)
			}
			if after := snapshot(t, ns); after != before {
				t.Fatalf("Add/Delete changed a foreign set:\n%s\n---\n%s", before, after)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	o := testConfig("enforce")
	o.IpsetPath = "/nonexistent/ipset"
	_, err := New(o)
	if !errors.Is(err, firewall.ErrUnavailable) || !strings.Contains(err.Error(), "apt install ipset") {
		t.Fatalf("err = %v, want ErrUnavailable saying what to install", err)
	}
}

func TestInvalidNeverReachesKernel(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "inv")
	b := newInNS(t, ns, testConfig("enforce"))
	if err := b.Up(ctx); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, ns)
	good := firewall.Entry{Prefix: netip.MustParsePrefix("198.51.100.0/24")}
	bad := []firewall.Entry{
		{Prefix: netip.Prefix{}},
		{Prefix: netip.MustParsePrefix("0.0.0.0/0")},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Comment: "x", Timeout: time.Hour},
	}
	for i, e := range bad {
		err := b.Replace(ctx, firewall.SetAllowCountry, []firewall.Entry{good, e})
		if !errors.Is(err, firewall.ErrInvalid) {
			t.Errorf("case %d: %v, want ErrInvalid", i, err)
		}
	}
	// Quotes and newlines in a comment cannot inject ipset restore lines.
	evil := firewall.Entry{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Comment: "x\"\nflush sipsentry-allow-cc-v4\n"}
	many := []firewall.Entry{evil}
	for i := range 100 {
		many = append(many, firewall.Entry{Prefix: netip.MustParsePrefix(fmt.Sprintf("198.18.0.%d/32", i))})
	}
	if err := b.Add(ctx, firewall.SetBan, many...); err != nil {
		t.Fatal(err)
	}
	es, err := b.List(ctx, firewall.SetBan)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 101 {
		t.Fatalf("ban set has %d entries, want 101", len(es))
	}
	if after := snapshot(t, ns); !strings.Contains(after, `add sipsentry-ban-v4 198.51.100.7 timeout 0 comment "x  flush sipsentry-allow-cc-v4 "`) {
		t.Fatalf("comment not neutralised:\n%s", after)
	}
	_ = before
}

var ctx = context.Background()

func TestUpWithFillsAllowCountryBeforeRules(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "upw")
	b := newInNS(t, ns, testConfig("enforce"))
	if err := b.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	s := snapshot(t, ns)
	if strings.Contains(s, "SIPSENTRY") || !strings.Contains(s, "create sipsentry-allow-cc-v4 hash:net family inet") {
		t.Fatalf("Prepare must create the sets and no rule:\n%s", s)
	}
	if err := firewall.UpWith(ctx, b, countryEntries(allowedCountry)); err != nil {
		t.Fatal(err)
	}
	s = snapshot(t, ns)
	if !strings.Contains(s, finalDrop) || !strings.Contains(s, `add sipsentry-allow-cc-v4 198.51.100.0/24 comment "ZZ"`) {
		t.Fatalf("after UpWith:\n%s", s)
	}
}

func TestBanMaxElemResize(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "rsz")
	small := testConfig("enforce")
	small.BanMaxElem = 2
	b := newInNS(t, ns, small)
	if err := b.Up(ctx); err != nil {
		t.Fatal(err)
	}
	es := []firewall.Entry{
		{Prefix: netip.MustParsePrefix("203.0.113.1/32"), Timeout: time.Hour, Comment: "a"},
		{Prefix: netip.MustParsePrefix("203.0.113.2/32")},
	}
	if err := b.Add(ctx, firewall.SetBan, es...); err != nil {
		t.Fatal(err)
	}
	err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: netip.MustParsePrefix("203.0.113.3/32")})
	if !errors.Is(err, firewall.ErrSetFull) {
		t.Fatalf("third entry in a maxelem-2 set: %v, want ErrSetFull", err)
	}
	big := testConfig("enforce")
	big.BanMaxElem = 5000
	b2 := newInNS(t, ns, big)
	if err := b2.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); !strings.Contains(s, "create sipsentry-ban-v4 hash:ip family inet") || !strings.Contains(s, "maxelem 5000") {
		t.Fatalf("ban set not resized:\n%s", s)
	}
	got, err := b2.List(ctx, firewall.SetBan)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Comment != "a" || got[0].Timeout < 59*time.Minute || got[1].Timeout != 0 {
		t.Fatalf("entries after resize: %+v", got)
	}
	if err := b2.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: netip.MustParsePrefix("203.0.113.3/32")}); err != nil {
		t.Fatalf("add after resize: %v", err)
	}
}

// TestMonitorDropsNothing: in monitor mode the foreign and the banned
// sender still reach the PBX, and the rules count what enforce would drop.
func TestMonitorDropsNothing(t *testing.T) {
	requireKernel(t)
	pbx, al, fo := netnstest.NewNS(t, "mpbx"), netnstest.NewNS(t, "mal"), netnstest.NewNS(t, "mfo")
	netnstest.Veth(t, pbx, al, []string{"198.51.100.1/24"}, []string{"198.51.100.10/24"})
	netnstest.Veth(t, pbx, fo, []string{"203.0.113.1/24"}, []string{"203.0.113.10/24"})
	b := newInNS(t, pbx, testConfig("monitor"))
	if err := firewall.UpWith(ctx, b, countryEntries(allowedCountry)); err != nil {
		t.Fatal(err)
	}
	listen(t, pbx, 5060, true)
	w := worlds[0]
	foC := dial(t, fo, w.foreign, netip.AddrPortFrom(w.pbxB, 5060))
	alC := dial(t, al, w.allowed, netip.AddrPortFrom(w.pbxA, 5060))
	final := "-A SIPSENTRY -j RETURN"
	f0 := counter(t, b, "inet", final)
	mustReach(t, foC, "foreign sender in monitor mode")
	if n := counter(t, b, "inet", final); n <= f0 {
		t.Fatalf("monitor's last rule did not count the foreign sender (%d -> %d)", f0, n)
	}
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: netip.PrefixFrom(w.allowed, 32)}); err != nil {
		t.Fatal(err)
	}
	if err := b.DropFlows(ctx, w.allowed); err != nil {
		t.Fatal(err)
	}
	banAccept := "--match-set sipsentry-ban-v4 src -j RETURN"
	b0 := counter(t, b, "inet", banAccept)
	mustReach(t, alC, "banned sender in monitor mode")
	if n := counter(t, b, "inet", banAccept); n <= b0 {
		t.Fatalf("monitor's ban rule did not count the banned sender")
	}
}

// TestConcurrentAddDuringReplace: bans added while allow-cc is being
// reloaded all land, none is lost to the swap (run with -race).
func TestConcurrentAddDuringReplace(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "conc")
	b := newInNS(t, ns, testConfig("enforce"))
	if err := b.Up(ctx); err != nil {
		t.Fatal(err)
	}
	us := geoList(t, "us-ipv4-aggregated.txt")
	es := make([]firewall.Entry, len(us))
	for i, p := range us {
		es[i] = firewall.Entry{Prefix: p}
	}
	done := make(chan error, 1)
	go func() {
		for range 3 {
			if err := b.Replace(ctx, firewall.SetAllowCountry, es); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	a := netip.MustParseAddr("198.18.0.1")
	const n = 300
	for range n {
		if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour}); err != nil {
			t.Fatal(err)
		}
		a = a.Next()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := b.List(ctx, firewall.SetBan)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := b.List(ctx, firewall.SetAllowCountry)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || len(cc) != len(es) {
		t.Fatalf("ban set %d entries (want %d), allow-cc %d (want %d)", len(got), n, len(cc), len(es))
	}
}

// TestDropFlowsOf: one call flushes the flows of several sources (opened
// by them or towards them) and leaves everyone else's.
func TestDropFlowsOf(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "ct")
	b := newInNS(t, ns, testConfig("enforce"))
	local := netip.MustParseAddrPort("198.51.100.1:5060")
	flows := map[string]netip.AddrPort{
		"bad1": netip.MustParseAddrPort("203.0.113.1:5062"),
		"bad2": netip.MustParseAddrPort("203.0.113.2:5062"),
		"good": netip.MustParseAddrPort("203.0.113.3:5062"),
	}
	for _, f := range flows {
		makeFlow(t, b, f, local)
	}
	// A flow the PBX opened towards bad2 (e.g. a qualify OPTIONS).
	makeFlow(t, b, netip.MustParseAddrPort("198.51.100.1:5070"), netip.MustParseAddrPort("203.0.113.2:5060"))
	count := func() map[netip.Addr]int {
		b.nlMu.Lock()
		defer b.nlMu.Unlock()
		fs, err := b.nl.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		m := map[netip.Addr]int{}
		for _, f := range fs {
			s, _ := netip.AddrFromSlice(f.Forward.SrcIP)
			d, _ := netip.AddrFromSlice(f.Forward.DstIP)
			m[s]++
			m[d]++
		}
		return m
	}
	if c := count(); c[flows["bad2"].Addr()] != 2 || c[flows["good"].Addr()] != 1 {
		t.Fatalf("flows before: %v", c)
	}
	if err := b.DropFlowsOf(ctx, []netip.Addr{flows["bad1"].Addr(), flows["bad2"].Addr()}); err != nil {
		t.Fatal(err)
	}
	c := count()
	if c[flows["bad1"].Addr()] != 0 || c[flows["bad2"].Addr()] != 0 || c[flows["good"].Addr()] != 1 {
		t.Fatalf("flows after: %v; want bad1 and bad2 gone, good kept", c)
	}
}

// TestPortsChange: a second up with other ports replaces sipsentry's jumps
// (and only them); an input_position past the end appends.
func TestPortsChange(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "ports")
	foreignState(t, ns)
	cfg := testConfig("enforce")
	cfg.InputPosition = 99
	if err := newInNS(t, ns, cfg).Up(ctx); err != nil {
		t.Fatal(err)
	}
	s := ns.MustExec("iptables", "-S", "INPUT")
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if !strings.HasSuffix(lines[len(lines)-1], "-p tcp -m multiport --dports 5060:5061 -m comment --comment sipsentry -j SIPSENTRY") {
		t.Fatalf("input_position 99 did not append:\n%s", s)
	}
	cfg.UDPPorts = []firewall.PortRange{{From: 5080, To: 5080}}
	cfg.RTPPorts = nil
	cfg.TCPPorts = []firewall.PortRange{{From: 5081, To: 5081}}
	if err := newInNS(t, ns, cfg).Up(ctx); err != nil {
		t.Fatal(err)
	}
	s = ns.MustExec("iptables", "-S", "INPUT")
	if strings.Contains(s, "--dports 5060") || !strings.Contains(s, "-p udp -m multiport --dports 5080 -m comment --comment sipsentry -j SIPSENTRY") ||
		!strings.Contains(s, "-p tcp -m multiport --dports 5081 -m comment --comment sipsentry -j SIPSENTRY") ||
		!strings.Contains(s, "-A INPUT -p udp -m udp --dport 5060 -j f2b-asterisk") {
		t.Fatalf("after the ports changed:\n%s", s)
	}
}
