package control

import (
	"errors"
	"testing"
)

// FuzzRequest: whatever a peer sends on one line, decoding and the checks
// the server makes before calling its handler never panic, and a refusal is
// always one of the package's errors (so the peer gets a coded answer).
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"op":"ban","target":"203.0.113.7","for":"1h","text":"brute force"}`,
		`{"v":1,"op":"allow","target":"198.51.100.0/24","for":"0s","text":"office"}`,
		`{"v":1,"op":"unban","target":"2001:db8::1"}`,
		`{"v":1,"op":"disallow","target":"::ffff:203.0.113.0/120"}`,
		`{"v":1,"op":"bans"}`,
		`{"v":1,"op":"ban","target":"fe80::1%eth0","for":"-5m","text":"\u0000"}`,
		`{"v":2}`, `[]`, `{"v":1,"op":"ban","target":"203.0.113.7"}{"v":1}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := decodeRequest(line)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("decode error %v is not ErrProtocol", err)
			}
			return
		}
		for _, e := range []error{
			func() error { _, err := ParseAddr(req.Target); return err }(),
			func() error { _, err := ParsePrefix(req.Target); return err }(),
			func() error { _, err := ParseFor(req.For, DefaultDuration); return err }(),
			CheckText("text", req.Text),
		} {
			if e != nil && !errors.Is(e, ErrInvalid) {
				t.Fatalf("check error %v is not ErrInvalid", e)
			}
		}
		if a, err := ParseAddr(req.Target); err == nil && (!a.IsValid() || a.Zone() != "" || a.Is4In6()) {
			t.Fatalf("ParseAddr(%q) = %v", req.Target, a)
		}
		if p, err := ParsePrefix(req.Target); err == nil && (!p.IsValid() || p != p.Masked() || p.Addr().Is4In6()) {
			t.Fatalf("ParsePrefix(%q) = %v", req.Target, p)
		}
		if d, err := ParseFor(req.For, DefaultDuration); err == nil && req.For != "" && d < 0 {
			t.Fatalf("ParseFor(%q) = %v", req.For, d)
		}
		// What the server echoes of a peer's text stays short.
		if n := len(sanitize(string(line), 64)); n > 64+12 {
			t.Fatalf("sanitize gave %d bytes for a 64-byte cap", n)
		}
	})
}
