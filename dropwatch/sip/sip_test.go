package sip_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/dropwatch/sip"
)

// TestRecorded checks the parser against requests recorded from a real
// Asterisk run (shared/testdata/asterisk/README.md lists each scenario).
func TestRecorded(t *testing.T) {
	all := sip.PNProvider | sip.PNPrid | sip.PNParam
	for _, tc := range []struct {
		file  string
		frame int
		want  sip.Request
		err   error
	}{
		// s1: scanner REGISTER, Request-URI without a user.
		{"sip-scenarios.pcap", 0, sip.Request{Method: "REGISTER", FromUser: "100", ToUser: "100", UserAgent: "friendly-scanner"}, nil},
		// s3a: the phone, RFC 8599 push parameters in its Contact.
		{"sip-scenarios.pcap", 120, sip.Request{Method: "REGISTER", FromUser: "1001", ToUser: "1001", UserAgent: "Bria iOS release 6.5.4 stamp 12345", Push: all}, nil},
		// s3b: the push server.
		{"sip-scenarios.pcap", 126, sip.Request{Method: "REGISTER", FromUser: "1001", ToUser: "1001", UserAgent: "Bria Push Service", Push: all}, nil},
		// the phone's answer to a qualify OPTIONS.
		{"sip-scenarios.pcap", 125, sip.Request{}, sip.ErrResponse},
		// s4: INVITE without credentials.
		{"sip-scenarios.pcap", 160, sip.Request{Method: "INVITE", RURIUser: "0046812345678", FromUser: "100", ToUser: "0046812345678", UserAgent: "friendly-scanner"}, nil},
		{"sip-scenarios.pcap", 166, sip.Request{Method: "INVITE", RURIUser: "1001", FromUser: "anonymous", ToUser: "1001", UserAgent: "PortSIP VoIP SDK 11.2"}, nil},
		{"sip-scenarios.pcap", 162, sip.Request{Method: "ACK", RURIUser: "0046812345678", FromUser: "100", ToUser: "0046812345678"}, nil},
		// s5: OPTIONS probe.
		{"sip-scenarios.pcap", 169, sip.Request{Method: "OPTIONS", RURIUser: "100", FromUser: "100", ToUser: "100", UserAgent: "friendly-scanner"}, nil},
		// s8a over IPv6, s8b over TCP.
		{"sip-scenarios.pcap", 179, sip.Request{Method: "REGISTER", FromUser: "100", ToUser: "100", UserAgent: "friendly-scanner"}, nil},
		{"sip-scenarios.pcap", 188, sip.Request{Method: "REGISTER", FromUser: "100", ToUser: "100", UserAgent: "friendly-scanner"}, nil},
		// a TCP handshake segment carries nothing.
		{"sip-scenarios.pcap", 185, sip.Request{}, sip.ErrNotRequest},
		// s8c from the namespace.
		{"sip-netns.pcap", 0, sip.Request{Method: "REGISTER", FromUser: "100", ToUser: "100", UserAgent: "friendly-scanner"}, nil},
		{"sip-netns.pcap", 1, sip.Request{}, sip.ErrResponse},
		// s9-06: a raw quote in the users (pjsip rejects it; we keep it).
		{"sip-s9-injection.pcap", 14, sip.Request{Method: "REGISTER", FromUser: `x",RemoteAddress="IPV4/UDP/6.6.6.6/5060`, ToUser: `x",RemoteAddress="IPV4/UDP/6.6.6.6/5060`, UserAgent: "friendly-scanner"}, nil},
		// s9-10: percent-encoded CR LF stays encoded.
		{"sip-s9-injection.pcap", 22, sip.Request{Method: "REGISTER", FromUser: "x%0D%0ARemoteAddress%3A%20IPV4/UDP/6.6.6.6/1", ToUser: "x%0D%0ARemoteAddress%3A%20IPV4/UDP/6.6.6.6/1", UserAgent: "friendly-scanner"}, nil},
		// s9-12: a 320-byte user is cut at MaxUser.
		{"sip-s9-injection.pcap", 26, sip.Request{Method: "REGISTER", FromUser: strings.Repeat("A", sip.MaxUser), ToUser: strings.Repeat("A", sip.MaxUser), UserAgent: "friendly-scanner", Truncated: true}, nil},
		// s9-13: raw UTF-8 users.
		{"sip-s9-injection.pcap", 28, sip.Request{Method: "REGISTER", FromUser: "日本", ToUser: "日本", UserAgent: "friendly-scanner"}, nil},
		// s9-19: a folded Call-ID does not hide the headers after it.
		{"sip-s9-injection.pcap", 47, sip.Request{Method: "REGISTER", FromUser: "9019", ToUser: "9019", UserAgent: "friendly-scanner"}, nil},
		// s9-23: an escaped NUL is not decoded.
		{"sip-s9-injection.pcap", 54, sip.Request{Method: "REGISTER", FromUser: "1001%00x", ToUser: "1001%00x", UserAgent: "friendly-scanner"}, nil},
	} {
		fr := frames(t, tc.file)
		if tc.frame >= len(fr) {
			t.Fatalf("%s has %d frames, want frame %d", tc.file, len(fr), tc.frame)
		}
		got, err := sip.Parse(fr[tc.frame].Payload)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("%s frame %d:\n got %+v, %v\nwant %+v, %v", tc.file, tc.frame, got, err, tc.want, tc.err)
		}
	}
}

// TestRecordedCut cuts every recorded request at every length (as
// --nflog-size does): no panic, an error only while the request line is
// incomplete, and every value found is a prefix of the whole packet's value
// (or empty), never something else.
func TestRecordedCut(t *testing.T) {
	n := 0
	for _, b := range payloads(t) {
		full, err := sip.Parse(b)
		if err != nil {
			continue
		}
		n++
		lineEnd := bytes.IndexByte(b, '\n')
		for cut := 0; cut < len(b); cut++ {
			got, err := sip.Parse(b[:cut])
			if err != nil {
				if cut > lineEnd {
					t.Fatalf("cut at %d of %q: %v after the whole request line", cut, b, err)
				}
				continue
			}
			if !got.Truncated {
				// A cut that still holds the empty line sees everything.
				if got != full {
					t.Fatalf("cut at %d of %q: complete but %+v, want %+v", cut, b, got, full)
				}
				continue
			}
			for _, f := range [][2]string{{got.Method, full.Method}, {got.RURIUser, full.RURIUser}, {got.FromUser, full.FromUser},
				{got.ToUser, full.ToUser}, {got.UserAgent, full.UserAgent}} {
				if !strings.HasPrefix(f[1], f[0]) {
					t.Fatalf("cut at %d of %q: %q is not a prefix of %q", cut, b, f[0], f[1])
				}
			}
			if got.Push&^full.Push != 0 {
				t.Fatalf("cut at %d of %q: push %v not within %v", cut, b, got.Push, full.Push)
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d recorded requests parsed; the pcaps hold more than 150", n)
	}
}

func TestParse(t *testing.T) {
	reg := "REGISTER sip:example.test SIP/2.0\r\n"
	for _, tc := range []struct {
		name string
		in   string
		want sip.Request
		err  error
	}{
		{"compact headers and LF only", "REGISTER sip:example.test SIP/2.0\nf: <sip:alice@example.test>;tag=1\nt: sip:bob@example.test\nm: <sip:alice@198.51.100.7;pn-provider=fcm>\n\n",
			sip.Request{Method: "REGISTER", FromUser: "alice", ToUser: "bob", Push: sip.PNProvider}, nil},
		{"older Bria push params, any case, header params", reg + "Contact: <sip:1001@198.51.100.7>;PN-TOK=abc;App-Id=com.counterpath\r\n\r\n",
			sip.Request{Method: "REGISTER", Push: sip.PNTok | sip.AppID}, nil},
		{"push params in the second of two contacts", reg + "Contact: <sip:a@h>, <sip:b@h;pn-prid=x>\r\nContact: <sip:c@h;pn-param=y>\r\n\r\n",
			sip.Request{Method: "REGISTER", Push: sip.PNPrid | sip.PNParam}, nil},
		{"a lookalike parameter is not a push parameter", reg + "Contact: <sip:a@h;pn-providerx=1;xpn-prid=2>;pn-tok-id=3\r\n\r\n",
			sip.Request{Method: "REGISTER"}, nil},
		{"push parameter in the From is not the Contact", reg + "From: <sip:a@h;pn-prid=1>\r\n\r\n",
			sip.Request{Method: "REGISTER", FromUser: "a"}, nil},
		{"display name holding < and an escaped quote", reg + "From: \"a \\\" <sip:evil@x>\" <sip:real@h>;tag=1\r\n\r\n",
			sip.Request{Method: "REGISTER", FromUser: "real"}, nil},
		{"user:password and tel URI", "INVITE tel:+15551234;phone-context=x SIP/2.0\r\nFrom: sip:u:pw@h;tag=1\r\n\r\n",
			sip.Request{Method: "INVITE", RURIUser: "+15551234", FromUser: "u"}, nil},
		{"folded User-Agent is unfolded", reg + "User-Agent: Bria\r\n  Push Service\r\n\r\n",
			sip.Request{Method: "REGISTER", UserAgent: "Bria Push Service"}, nil},
		{"first From wins", reg + "From: <sip:one@h>\r\nFrom: <sip:two@h>\r\n\r\n",
			sip.Request{Method: "REGISTER", FromUser: "one"}, nil},
		{"the body is not read", reg + "\r\nFrom: <sip:body@h>\r\n",
			sip.Request{Method: "REGISTER"}, nil},
		{"cut inside the headers", reg + "From: <sip:alice@h>\r\nUser-Agent: Bria Pu",
			sip.Request{Method: "REGISTER", FromUser: "alice", UserAgent: "Bria Pu", Truncated: true}, nil},
		{"cut inside the request line", "REGISTER sip:ex", sip.Request{Method: "REGISTER", Truncated: true}, nil},
		{"cut inside the version", "OPTIONS sip:100@h SI", sip.Request{Method: "OPTIONS", RURIUser: "100", Truncated: true}, nil},
		{"unknown method kept", "FOO sip:u@h SIP/2.0\r\n\r\n", sip.Request{Method: "FOO", RURIUser: "u"}, nil},
		{"response", "SIP/2.0 401 Unauthorized\r\n\r\n", sip.Request{}, sip.ErrResponse},
		{"keepalive", "\r\n\r\n", sip.Request{}, sip.ErrNotRequest},
		{"empty", "", sip.Request{}, sip.ErrNotRequest},
		{"HTTP", "GET / HTTP/1.1\r\n\r\n", sip.Request{}, sip.ErrNotRequest},
		{"wrong version", "REGISTER sip:h SIP/3.0\r\n\r\n", sip.Request{}, sip.ErrNotRequest},
		{"method too long", strings.Repeat("A", sip.MaxMethod+1) + " sip:h SIP/2.0\r\n\r\n", sip.Request{}, sip.ErrNotRequest},
		{"method with a control byte", "REG\x00 sip:h SIP/2.0\r\n\r\n", sip.Request{}, sip.ErrNotRequest},
		{"binary", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", sip.Request{}, sip.ErrNotRequest},
	} {
		got, err := sip.Parse([]byte(tc.in))
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("%s:\n got %+v, %v\nwant %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestParseCaps(t *testing.T) {
	ua := strings.Repeat("U", 1000)
	in := "REGISTER sip:" + strings.Repeat("r", 1000) + "@h SIP/2.0\r\nUser-Agent: " + ua + "\r\n\r\n"
	got, err := sip.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.RURIUser) != sip.MaxUser || len(got.UserAgent) != sip.MaxUserAgent || !got.Truncated {
		t.Errorf("got ruri user %d bytes, UA %d bytes, truncated %v; want %d, %d, true", len(got.RURIUser), len(got.UserAgent), got.Truncated, sip.MaxUser, sip.MaxUserAgent)
	}
	// Only MaxInput bytes are read: the '@' of a longer request line is
	// never seen, so there is no user at all.
	got, err = sip.Parse([]byte(strings.Replace(in, strings.Repeat("r", 1000), strings.Repeat("r", 2*sip.MaxInput), 1)))
	if err != nil || got.RURIUser != "" || got.UserAgent != "" || !got.Truncated {
		t.Errorf("past MaxInput: got %+v, %v", got, err)
	}
	// More header lines than MaxHeaders: the parser stops looking.
	many := "REGISTER sip:h SIP/2.0\r\n" + strings.Repeat("X-A: 1\r\n", sip.MaxHeaders) + "User-Agent: late\r\n\r\n"
	got, _ = sip.Parse([]byte(many))
	if got.UserAgent != "" || !got.Truncated {
		t.Errorf("after %d headers: UA %q truncated %v, want none and true", sip.MaxHeaders, got.UserAgent, got.Truncated)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"friendly-scanner":           "friendly-scanner",
		`x",RemoteAddress="6.6.6.6`:  `x\",RemoteAddress=\"6.6.6.6`,
		"a\r\nEvent: SuccessfulAuth": `a\r\nEvent: SuccessfulAuth`,
		"日本":                         `\u65e5\u672c`,
		"back\\slash":                `back\\slash`,
		"\x1b[31mred":                `\x1b[31mred`,
		string([]byte{0xff, 'a'}):    `\xffa`,
		"\u202egnp.exe":              `\u202egnp.exe`,
	} {
		if got := sip.Printable(in); got != want {
			t.Errorf("Printable(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestPushParamsString(t *testing.T) {
	if got := (sip.PNProvider | sip.PNPrid | sip.AppID).String(); got != "pn-provider,pn-prid,app-id" {
		t.Errorf("got %q", got)
	}
}
