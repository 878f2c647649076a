package firewall

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := []struct {
		set  Set
		in   Entry
		want netip.Prefix
	}{
		{SetAllow, Entry{Prefix: netip.MustParsePrefix("198.51.100.77/24")}, netip.MustParsePrefix("198.51.100.0/24")},
		{SetBan, Entry{Prefix: netip.MustParsePrefix("::ffff:203.0.113.9/128")}, netip.MustParsePrefix("203.0.113.9/32")},
		{SetAllowCountry, Entry{Prefix: netip.MustParsePrefix("::ffff:203.0.113.0/120")}, netip.MustParsePrefix("203.0.113.0/24")},
		{SetBan, Entry{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Timeout: time.Hour}, netip.MustParsePrefix("2001:db8::1/128")},
	}
	for _, c := range ok {
		got, err := Validate(c.set, c.in)
		if err != nil || got.Prefix != c.want {
			t.Errorf("Validate(%s, %s) = %v, %v; want %s", c.set, c.in.Prefix, got.Prefix, err, c.want)
		}
	}
	bad := []struct {
		set Set
		in  Entry
	}{
		{SetBan, Entry{Prefix: netip.MustParsePrefix("203.0.113.0/24")}},
		{SetAllow, Entry{}},
		{SetAllow, Entry{Prefix: netip.MustParsePrefix("0.0.0.0/0")}},
		{SetAllow, Entry{Prefix: netip.MustParsePrefix("::ffff:0.0.0.0/90")}},
		{SetAllowCountry, Entry{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Timeout: time.Second}},
		{SetBan, Entry{Prefix: netip.MustParsePrefix("203.0.113.1/32"), Timeout: -1}},
		{Set("other"), Entry{Prefix: netip.MustParsePrefix("203.0.113.1/32")}},
	}
	for _, c := range bad {
		if _, err := Validate(c.set, c.in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%s, %+v) = %v, want ErrInvalid", c.set, c.in, err)
		}
	}
}

func TestCleanComment(t *testing.T) {
	got := CleanComment("a\"b\nc\\d\x00e")
	if got != "a b c d e" {
		t.Errorf("CleanComment = %q", got)
	}
	long := CleanComment(strings.Repeat("é", 200)) // 400 bytes
	if len(long) > MaxComment || !strings.HasPrefix(strings.Repeat("é", 200), long) {
		t.Errorf("long comment cut badly: %d bytes", len(long))
	}
}
