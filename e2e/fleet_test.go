package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/crowdsec/lapitest"
	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// pbx is one sipsentry daemon with its fake Asterisk, in a namespace of its
// own, linked to the LAPI's namespace.
type pbx struct {
	ns  *netnstest.NS
	srv *amitest.Server
	d   *daemonProc
}

// fleetFailure is one PJSIP ChallengeResponseFailed from src, as Asterisk
// 22 writes it, with a nonce of Asterisk's form issued a second before.
func fleetFailure(src netip.Addr, n int) []byte {
	now := time.Now()
	return fmt.Appendf(nil, "Event: ChallengeResponseFailed\r\nPrivilege: security,all\r\nSystemName: fleetlab\r\nEventTV: %s\r\n"+
		"Severity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: 1001\r\nSessionID: fleet-%s-%d\r\n"+
		"LocalAddress: IPV4/UDP/198.51.100.1/5060\r\nRemoteAddress: IPV4/UDP/%s/5060\r\n"+
		"Challenge: %d/0123456789abcdef0123456789abcdef\r\nResponse: fedcba9876543210fedcba9876543210\r\nExpectedResponse: \r\n\r\n",
		now.UTC().Format("2006-01-02T15:04:05.000-0700"), src, n, src, now.Unix()-1)
}

func bruteForce(src netip.Addr) []byte {
	var b []byte
	for i := range 6 {
		b = append(b, fleetFailure(src, i)...)
	}
	return b
}

// startPBX starts a PBX whose link to the LAPI's namespace lns has the
// addresses linkPBX (its end) and linkLAPI (the LAPI's end).
func startPBX(t *testing.T, bin, name string, lapi *lapitest.LAPI, lns *netnstest.NS, linkPBX, linkLAPI netnstest.Addr, lists, mmdb string) *pbx {
	t.Helper()
	ns := netnstest.NewNS(t, name)
	netnstest.Veth(t, ns, lns, []netnstest.Addr{linkPBX}, []netnstest.Addr{linkLAPI})
	lapiURL := "http://" + strings.Split(linkLAPI, "/")[0] + ":18080/"
	var srv *amitest.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	machine := lapi.AddMachine(name)
	key := lapi.AddBouncer(name)
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[log]
level = "debug"
format = "json"
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
ping_interval = "1s"
timeout = "2s"
reconnect_max = "1s"
[geo]
allow_countries = ["JP"]
lists_dir = %q
mmdb = %q
min_entries = 0
[firewall]
mode = "enforce"
backend = "iptables"
[engine]
geo_mode = "off"
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = "127.0.0.1:9468"
[control]
socket = %q
[crowdsec]
enabled = true
url = %q
machine_credentials_file = %q
bouncer_key_file = %q
poll_interval = "1s"
`, filepath.Join(dir, "state"), srv.Addr(), lists, mmdb, filepath.Join(dir, "control.sock"), lapiURL, machine, key))
	d := startDaemon(t, ns, bin, cfg)
	if !srv.WaitLogins(1) {
		t.Fatalf("%s never logged in to its fake AMI server", name)
	}
	return &pbx{ns: ns, srv: srv, d: d}
}

func banned(t *testing.T, p *pbx, set, a string) bool {
	return slices.Contains(setMembers(t, p.ns, set), a)
}

// Two PBXes share one real CrowdSec LAPI (Debian's crowdsec, LAPI only):
// a brute force seen by A reaches B's kernel ban set; cscli decisions
// reach both and their deletion lifts them; remote decisions for
// 0.0.0.0/0-like ranges, loopback or the allowed country are refused; a
// LAPI outage during a flood leaves A banning locally and B catches up
// once the LAPI is back.
func TestFleetSharesBansThroughCrowdSecLAPI(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables", "crowdsec", "cscli")
	bin := buildBinary(t)
	lns := netnstest.NewNS(t, "lapi")
	lns.MustExec("ip", "link", "set", "lo", "up")
	lapi := lapitest.StartWith(t, lapitest.Options{NS: lns, ListenIP: "0.0.0.0"})
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	geotest.WriteLists(t, lists, map[string][]string{
		"JP": {"198.51.100.0/24"},
		"CN": {"203.0.113.0/24"},
	})
	mmdb := filepath.Join(dir, "country.mmdb")
	geotest.WriteMMDB(t, mmdb, map[string]string{"198.51.100.0/24": "JP", "203.0.113.0/24": "CN"}, false)

	// Each daemon reaches the LAPI at the LAPI's end of its own link.
	a := startPBX(t, bin, "fleet-a", lapi, lns, "198.51.100.250/30", "198.51.100.249/30", lists, mmdb)
	b := startPBX(t, bin, "fleet-b", lapi, lns, "198.51.100.254/30", "198.51.100.253/30", lists, mmdb)

	// 1. A brute force seen by A only.
	a.srv.Send(bruteForce(netip.MustParseAddr("203.0.113.77")))
	eventually(t, "A bans the brute-forcer locally", func() (bool, string) {
		return banned(t, a, "sipsentry-ban-v4", "203.0.113.77"), "not in A's ban set"
	})
	eventually(t, "B bans A's brute-forcer through the LAPI", func() (bool, string) {
		return banned(t, b, "sipsentry-ban-v4", "203.0.113.77"), "not in B's ban set"
	})

	// 2. A decision made on the LAPI host reaches both; its deletion lifts it.
	lapi.Cscli("decisions", "add", "--ip", "203.0.113.120", "--duration", "2h", "--reason", "fleet test")
	for _, p := range []*pbx{a, b} {
		eventually(t, p.ns.Name+" applies cscli's decision", func() (bool, string) {
			return banned(t, p, "sipsentry-ban-v4", "203.0.113.120"), "not in the ban set"
		})
	}
	lapi.Cscli("decisions", "delete", "--ip", "203.0.113.120")
	for _, p := range []*pbx{a, b} {
		eventually(t, p.ns.Name+" lifts the deleted decision", func() (bool, string) {
			return !banned(t, p, "sipsentry-ban-v4", "203.0.113.120"), "still in the ban set"
		})
	}

	// 3. Refused: a /8, loopback, the allowed country's range. A range that
	// passes every rule lands in the range set, as the control.
	lapi.Cscli("decisions", "add", "--range", "10.0.0.0/8", "--duration", "2h", "--reason", "too wide")
	lapi.Cscli("decisions", "add", "--ip", "127.0.0.1", "--duration", "2h", "--reason", "loopback")
	lapi.Cscli("decisions", "add", "--range", "198.51.100.0/24", "--duration", "2h", "--reason", "our country")
	lapi.Cscli("decisions", "add", "--range", "203.0.113.128/25", "--duration", "2h", "--reason", "control")
	for _, p := range []*pbx{a, b} {
		eventually(t, p.ns.Name+" applies the acceptable range", func() (bool, string) {
			return banned(t, p, "sipsentry-ban-net-v4", "203.0.113.128/25"), "not in the range set"
		})
		nets := setMembers(t, p.ns, "sipsentry-ban-net-v4")
		ips := setMembers(t, p.ns, "sipsentry-ban-v4")
		for _, bad := range []string{"10.0.0.0/8", "198.51.100.0/24"} {
			if slices.Contains(nets, bad) {
				t.Errorf("%s applied the remote range %s", p.ns.Name, bad)
			}
		}
		if slices.Contains(ips, "127.0.0.1") {
			t.Errorf("%s banned loopback from a remote decision", p.ns.Name)
		}
	}

	// 4. The LAPI goes away during a flood: A bans every source locally at
	// once; B gets them all when the LAPI is back.
	lapi.Stop()
	const flood = 200
	var srcs []string
	var buf []byte
	for i := range flood {
		src := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if i == 77 || i == 120 || i >= 128 { // already banned, or in the remote range
			continue
		}
		srcs = append(srcs, src.String())
		buf = append(buf, bruteForce(src)...)
	}
	a.srv.Send(buf)
	eventually(t, "A bans the flood locally while the LAPI is down", func() (bool, string) {
		got := setMembers(t, a.ns, "sipsentry-ban-v4")
		missing := 0
		for _, s := range srcs {
			if !slices.Contains(got, s) {
				missing++
			}
		}
		return missing == 0, strconv.Itoa(missing) + " missing"
	})
	lapi.Restart()
	eventually(t, "B catches up once the LAPI is back", func() (bool, string) {
		got := setMembers(t, b.ns, "sipsentry-ban-v4")
		var missing []string
		for _, s := range srcs {
			if !slices.Contains(got, s) {
				missing = append(missing, s)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d missing, e.g. %s", len(missing), strings.Join(missing[:min(3, len(missing))], " "))
	})
}
