package ami_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

func msgOf(t *testing.T, s string) ami.Message {
	t.Helper()
	msgs, st := readAll(t, []byte(strings.ReplaceAll(s, "|", "\r\n")+"\r\n\r\n"), false)
	if len(msgs) != 1 {
		t.Fatalf("%q gave %d messages (%+v)", s, len(msgs), st)
	}
	return msgs[0]
}

const genuineHead = "Event: InvalidAccountID|Privilege: security,all|EventTV: 2026-11-25T13:12:07.974+0000|" +
	"Severity: Error|Service: PJSIP|EventVersion: 1|AccountID: 100|SessionID: 1-1@x|LocalAddress: IPV4/UDP/127.0.0.1/5060"

func TestParseSecurityEventGenuine(t *testing.T) {
	m := msgOf(t, genuineHead+"|RemoteAddress: IPV4/UDP/203.0.113.5/5060|Module: res_pjsip|SessionTV: 2026-11-25T13:12:07.974+0000")
	ev, err := ami.ParseSecurityEvent(&m)
	if err != nil || ev.Suspicion != "" {
		t.Fatalf("%v %q", err, ev.Suspicion)
	}
	if ev.Remote.AddrPort != netip.MustParseAddrPort("203.0.113.5:5060") || ev.Remote.Transport != "UDP" {
		t.Errorf("Remote %v", ev.Remote)
	}
	want := time.Date(2026, 11, 25, 13, 12, 7, 974e6, time.UTC)
	if !ev.Time.Equal(want) || !ev.SessionTV.Equal(want) {
		t.Errorf("Time %v SessionTV %v", ev.Time, ev.SessionTV)
	}
	if len(ev.Fields) != 1 || ev.Field("module") != "res_pjsip" {
		t.Errorf("Fields %q", ev.Fields)
	}
}

func TestParseSecurityEventInjection(t *testing.T) {
	cases := []struct {
		name, msg, remote, why string
		err                    error
	}{
		{"forged RemoteAddress before the real one",
			strings.Replace(genuineHead, "AccountID: 100", "AccountID: x|RemoteAddress: IPV4/UDP/6.6.6.6/1", 1) + "|RemoteAddress: IPV4/UDP/127.0.0.13/5099",
			"127.0.0.13:5099", "repeated RemoteAddress", nil},
		{"bad last RemoteAddress never falls back to an earlier one",
			genuineHead + "|RemoteAddress: IPV4/UDP/6.6.6.6/1|RemoteAddress: IPV4/UDP/not-an-ip/5060",
			"", "unparsable last RemoteAddress", ami.ErrNoSource},
		{"forged block without Privilege, EventTV, Service",
			"Event: SuccessfulAuth|SessionID: 1-4332@127.0.0.13|LocalAddress: IPV4/UDP/127.0.0.1/5060|RemoteAddress: IPV4/UDP/127.0.0.13/5100",
			"127.0.0.13:5100", "no security Privilege; missing EventTV", nil},
		{"wrong privilege class", strings.Replace(genuineHead, "security,all", "system,all", 1) + "|RemoteAddress: IPV4/UDP/127.0.0.13/5100",
			"127.0.0.13:5100", "no security Privilege", nil},
		{"cut short", "Event: InvalidAccountID|Privilege: security,all|EventTV: 2026-11-25T13:44:10.835+0000|Severity: Error|Service: PJSIP|EventVersion: 1|AccountID:",
			"", "missing SessionID; missing LocalAddress; missing RemoteAddress", ami.ErrNoSource},
		{"second Event header", genuineHead + "|Event: SuccessfulAuth|RemoteAddress: IPV4/UDP/127.0.0.13/5100",
			"127.0.0.13:5100", "repeated Event", nil},
		{"repeated event-specific field", strings.Replace(genuineHead, "InvalidAccountID", "ChallengeResponseFailed", 1) +
			"|RemoteAddress: IPV4/UDP/127.0.0.13/5100|Challenge: a|Response: b|Response: c",
			"127.0.0.13:5100", "repeated Response", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := msgOf(t, c.msg)
			if !ami.IsSecurityEvent(&m) {
				t.Fatal("IsSecurityEvent false")
			}
			ev, err := ami.ParseSecurityEvent(&m)
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if c.remote == "" {
				if ev.Remote.IsValid() {
					t.Fatalf("Remote %v, want none", ev.Remote)
				}
			} else if ev.Remote.AddrPort != netip.MustParseAddrPort(c.remote) {
				t.Fatalf("Remote %v, want %s", ev.Remote, c.remote)
			}
			if !strings.Contains(ev.Suspicion, c.why) {
				t.Fatalf("Suspicion %q, want it to contain %q", ev.Suspicion, c.why)
			}
		})
	}
}

func TestParseSecurityEventNotSecurity(t *testing.T) {
	for _, s := range []string{
		"Event: ContactStatus|Privilege: system,all|RemoteAddress: IPV4/UDP/127.0.0.13/5100",
		"Response: Success|ActionID: 1",
		"Event: invalidaccountid|RemoteAddress: IPV4/UDP/127.0.0.13/5100", // types are case-sensitive on the wire
	} {
		m := msgOf(t, s)
		if ami.IsSecurityEvent(&m) {
			t.Errorf("IsSecurityEvent(%q)", s)
		}
		if ev, err := ami.ParseSecurityEvent(&m); !errors.Is(err, ami.ErrNotSecurityEvent) || ev.Remote.IsValid() {
			t.Errorf("ParseSecurityEvent(%q) = %+v, %v", s, ev, err)
		}
	}
}

func TestParseEventTV(t *testing.T) {
	want := time.Date(2026, 11, 25, 13, 12, 7, 974e6, time.UTC)
	for in, w := range map[string]time.Time{
		"2026-11-25T13:12:07.974+0000":  want,
		"2026-11-25T14:12:07.974+0100":  want,
		"2026-11-25T13:12:07.974Z":      want,
		"2026-11-25T13:12:07.974+00:00": want,
		"1795612327-974000":             time.Unix(1795612327, 974e6),
		"1970-01-01T00:00:00.000+0000":  time.Unix(0, 0),
	} {
		got, err := ami.ParseEventTV(in)
		if err != nil || !got.Equal(w) {
			t.Errorf("ParseEventTV(%q) = %v, %v; want %v", in, got, err, w)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-11-31T13:12:07.974+0000", "2026-13-25T13:12:07.974+0000", "2026-11-25T13:12:07.97x+0000"} {
		if got, err := ami.ParseEventTV(bad); err == nil {
			t.Errorf("ParseEventTV(%q) = %v, want error", bad, got)
		}
	}
}

func TestContactVia(t *testing.T) {
	for _, c := range []struct {
		addr, port string
		want       string
	}{
		{"127.0.0.21", "5061", "127.0.0.21:5061"},
		{"::1", "5077", "[::1]:5077"},
		{"[2001:db8::1]", "5060", "[2001:db8::1]:5060"},
		{"::ffff:203.0.113.5", "5060", "203.0.113.5:5060"},
		{"", "5060", ""},
		{"127.0.0.1", "", ""},
		{"127.0.0.1", "70000", ""},
		{"fe80::1%eth0", "5060", ""},
		{"host.example", "5060", ""},
	} {
		got, ok := ami.Contact{ViaAddr: c.addr, ViaPort: c.port}.Via()
		if c.want == "" {
			if ok {
				t.Errorf("Via(%q,%q) = %v, want none", c.addr, c.port, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddrPort(c.want) {
			t.Errorf("Via(%q,%q) = %v %v, want %s", c.addr, c.port, got, ok, c.want)
		}
	}
}

func TestParseContactRefusesRepeatedKeys(t *testing.T) {
	m := msgOf(t, "Event: ContactList|ObjectName: 1001;@x|ViaAddr: 198.51.100.7|ViaPort: 5060|UserAgent: Bria Push Service|ViaAddr: 6.6.6.6")
	if _, err := ami.ParseContact(&m); err == nil || !strings.Contains(err.Error(), "ViaAddr") {
		t.Fatalf("ParseContact accepted a repeated ViaAddr: %v", err)
	}
	m = msgOf(t, "Event: ContactStatus|URI: sip:1001@x|ContactStatus: Reachable|ContactStatus: Removed")
	if _, err := ami.ParseContactStatus(&m); err == nil {
		t.Fatal("ParseContactStatus accepted a repeated ContactStatus")
	}
	m = msgOf(t, "Event: ContactList|ObjectName: 1001;@x|ExpirationTime: soon")
	if _, err := ami.ParseContact(&m); err == nil {
		t.Fatal("ParseContact accepted a non-numeric ExpirationTime")
	}
}

// A message of thousands of headers (the cap allows ~16k) takes the map
// path of the repeated-key check (the quadratic scan made the fuzzer stall);
// it must find repeats there too, case-insensitively.
func TestParseManyHeaders(t *testing.T) {
	var b strings.Builder
	b.WriteString("Event: ContactList\r\n")
	for i := 0; b.Len() < 60000; i++ {
		fmt.Fprintf(&b, "K%d:\r\n", i)
	}
	b.WriteString("\r\n")
	msgs, _ := readAll(t, []byte(b.String()), false)
	if len(msgs) != 1 || len(msgs[0].Headers) < 5000 {
		t.Fatalf("%d messages", len(msgs))
	}
	if _, err := ami.ParseContact(&msgs[0]); err != nil {
		t.Fatal(err)
	}
	msgs[0].Headers = append(msgs[0].Headers, ami.Header{Key: "k7", Value: "dup"})
	if _, err := ami.ParseContact(&msgs[0]); err == nil || !strings.Contains(err.Error(), "k7") {
		t.Fatalf("repeated key (different case) not found among many: %v", err)
	}
}
