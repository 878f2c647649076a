package iptables

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// Captured from ipset v7.17 on kernel 6.18.
const listTerse = `Name: sipsentry-ban-v4
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 1048576 timeout 0 comment bucketsize 12 initval 0x173689b8
Size in memory: 351
References: 1
Number of entries: 1

Name: f2b-asterisk
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 timeout 600 bucketsize 12 initval 0x5a1c3e2f
Size in memory: 344
References: 0
Number of entries: 3
`

func TestParseListTerse(t *testing.T) {
	sets, err := parseListTerse(listTerse)
	if err != nil {
		t.Fatal(err)
	}
	ban := sets["sipsentry-ban-v4"]
	want := setHeader{Name: "sipsentry-ban-v4", Type: "hash:ip", Family: "inet", Timeout: true, Comment: true,
		MaxElem: 1048576, Entries: 1, Memory: 351, Refs: 1, Revision: 6}
	if ban != want {
		t.Errorf("ban = %+v\nwant %+v", ban, want)
	}
	f2b := sets["f2b-asterisk"]
	if f2b.Comment || !f2b.Timeout || f2b.Entries != 3 {
		t.Errorf("f2b = %+v", f2b)
	}
	b := &Backend{prefix: "sipsentry-", cfg: Options{BanMaxElem: 1 << 20}}
	if err := ban.matches(b.spec("ban", "inet")); err != nil {
		t.Errorf("own set not recognised: %v", err)
	}
	if err := ban.matches(b.spec("ban", "inet6")); err == nil {
		t.Errorf("a v4 set matched the v6 spec")
	}
}

func TestParseSave(t *testing.T) {
	out := `create sipsentry-ban-v4 hash:ip family inet hashsize 1024 maxelem 1048576 timeout 0 comment bucketsize 12 initval 0x173689b8
add sipsentry-ban-v4 203.0.113.5 timeout 7199 comment "manual 2026-11-25T15:06:11Z: test scan"
add sipsentry-ban-v4 203.0.113.6 timeout 0
add other 203.0.113.7 timeout 0
`
	es, err := parseSave(out, "sipsentry-ban-v4")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Prefix != netip.MustParsePrefix("203.0.113.5/32") || es[0].Timeout != 7199*time.Second ||
		es[0].Comment != "manual 2026-11-25T15:06:11Z: test scan" || es[1].Timeout != 0 || es[1].Comment != "" {
		t.Fatalf("parseSave = %+v", es)
	}
	es, err = parseSave("add n 2001:db8::/32 comment \"x y\"\n", "n")
	if err != nil || len(es) != 1 || es[0].Prefix != netip.MustParsePrefix("2001:db8::/32") || es[0].Comment != "x y" {
		t.Fatalf("v6 net: %+v %v", es, err)
	}
	if _, err := parseSave("add n 2001:db8::zz\n", "n"); err == nil {
		t.Fatal("bad member accepted")
	}
}

func TestParseCounted(t *testing.T) {
	r, ok := parseCounted(`-A SIPSENTRY -m limit --limit 6/min -c 12 960 -j LOG --log-prefix "sipsentry-would-drop: "`)
	if !ok || r.Packets != 12 || r.Bytes != 960 || r.Spec != `-A SIPSENTRY -m limit --limit 6/min -j LOG --log-prefix "sipsentry-would-drop: "` {
		t.Fatalf("parseCounted = %+v %v", r, ok)
	}
	if _, ok := parseCounted("-N SIPSENTRY"); ok {
		t.Fatal("chain line taken as a rule")
	}
}

func TestPortLists(t *testing.T) {
	var many []firewall.PortRange
	for p := uint16(5000); p < 5010; p++ {
		many = append(many, firewall.PortRange{From: p, To: p})
	}
	got := portLists(many, []firewall.PortRange{{From: 10000, To: 20000}, {From: 30000, To: 30010}, {From: 40000, To: 40000}, {From: 40001, To: 40001}})
	// 10 single ports + 2 ranges (2 slots each) + 1 = 15, iptables' limit
	// (checked: a 16th slot is "too many ports specified"); then the rest.
	want := []string{"5000,5001,5002,5003,5004,5005,5006,5007,5008,5009,10000:20000,30000:30010,40000", "40001"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("portLists = %q, want %q", got, want)
	}
}

func TestTimeoutSeconds(t *testing.T) {
	for in, want := range map[time.Duration]uint32{time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, 1000 * 24 * time.Hour: 2147483} {
		if got := timeoutSeconds(in); got != want {
			t.Errorf("timeoutSeconds(%s) = %d, want %d", in, got, want)
		}
	}
}

func TestMissingExtension(t *testing.T) {
	// As iptables-nft 1.8.9 words it when xt_set is absent.
	err := missingExtension(errors.New("running [/usr/sbin/iptables -t filter -A SIPSENTRY -m set --match-set x src -j DROP --wait]: exit status 2: iptables v1.8.9 (nf_tables): Couldn't load match `set':No such file or directory"))
	if !errors.Is(err, firewall.ErrUnavailable) || !strings.Contains(err.Error(), "modprobe xt_set") {
		t.Fatalf("missingExtension = %v", err)
	}
	other := errors.New("iptables: Index of insertion too big.")
	if missingExtension(other) != other {
		t.Fatal("an unrelated error was rewritten")
	}
}
