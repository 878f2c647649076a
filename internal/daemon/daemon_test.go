package daemon

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/state"
)

func TestRecentEventsKeepsTheNewestFirst(t *testing.T) {
	r := newRecentEvents(3)
	t0 := time.Date(2026, 11, 25, 13, 12, 0, 0, time.UTC)
	for i := range 5 {
		ev := ami.SecurityEvent{Type: ami.EventInvalidAccountID, Service: "PJSIP", AccountID: string(rune('a' + i)),
			Remote: ami.Address{Transport: "UDP", AddrPort: netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 5060)}}
		r.add(ev, t0.Add(time.Duration(i)*time.Second))
	}
	got := r.list()
	if len(got) != 3 {
		t.Fatalf("kept %d events, want the last 3", len(got))
	}
	for i, want := range []string{"203.0.113.4", "203.0.113.3", "203.0.113.2"} {
		if got[i].Source != want {
			t.Errorf("event %d is from %s, want %s (newest first)", i, got[i].Source, want)
		}
	}
	if got[0].Account != "e" || !got[0].Time.Equal(t0.Add(4*time.Second)) {
		t.Errorf("newest = %+v", got[0])
	}
}

func TestListsFingerprintIgnoresListsNotAllowed(t *testing.T) {
	v := time.Unix(1764076000, 0)
	a := []geo.ListInfo{{Name: "jp-ipv4", Allowed: true, Entries: 10, Verified: v}, {Name: "cn-ipv4", Entries: 5, Verified: v}}
	b := []geo.ListInfo{{Name: "jp-ipv4", Allowed: true, Entries: 10, Verified: v}, {Name: "cn-ipv4", Entries: 6, Verified: v.Add(time.Hour)}}
	if listsFingerprint(a) != listsFingerprint(b) {
		t.Error("a change in a list that is not allowed changed the fingerprint")
	}
	c := []geo.ListInfo{{Name: "jp-ipv4", Allowed: true, Entries: 11, Verified: v}}
	d := []geo.ListInfo{{Name: "jp-ipv4", Allowed: true, Entries: 10, Verified: v.Add(time.Hour)}}
	if listsFingerprint(a) == listsFingerprint(c) || listsFingerprint(a) == listsFingerprint(d) {
		t.Error("a changed or refreshed allowed list kept the fingerprint")
	}
}

func TestOtherEventLabelIsBounded(t *testing.T) {
	for in, want := range map[string]string{
		"ContactStatus": "ContactStatus", "FullyBooted": "FullyBooted",
		"x\",RemoteAddress=\"IPV4/UDP/6.6.6.6/50": "other", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA": "other",
	} {
		if got := ami.EventLabel(in); got != want {
			t.Errorf("ami.EventLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// The one AMI client builder: the daemon and `ami tail` log in alike.
func TestAMIClientConfig(t *testing.T) {
	c := config.Default()
	c.AMI.Address, c.AMI.Username, c.AMI.Auth = "127.0.0.1:5038", "sipsentry", "md5"
	cc, err := AMIClientConfig(c, "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Address != "127.0.0.1:5038" || cc.Username != "sipsentry" || cc.Secret != "s3cret" || !cc.MD5 ||
		cc.Events != "security,system" || cc.TLS != nil || cc.Timeout != c.AMI.Timeout.D() {
		t.Errorf("client config = %+v", cc)
	}
	c.AMI.Auth = "plain"
	c.AMI.TLS, c.AMI.TLSCA = true, filepath.Join(t.TempDir(), "missing-ca.pem")
	cc, err = AMIClientConfig(c, "s3cret", nil)
	if cc.MD5 {
		t.Error("auth = plain gave MD5")
	}
	if !errors.Is(err, ErrConfig) {
		t.Errorf("a missing ami.tls_ca: %v, want an ErrConfig", err)
	}
}

// A missing replay file is a configuration error with its own message,
// before anything is opened.
func TestRunMissingReplayIsConfigError(t *testing.T) {
	c := config.Default()
	c.StateDir = t.TempDir()
	c.Firewall.Backend = "dry-run"
	missing := filepath.Join(t.TempDir(), "nope.cap")
	err := Run(t.Context(), c, Options{Replay: missing})
	if !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), "run: --replay: ") || !strings.Contains(err.Error(), "nope.cap") {
		t.Errorf("Run = %v, want ErrConfig naming the file", err)
	}
	if _, statErr := os.Stat(state.Path(c.StateDir)); statErr == nil {
		t.Error("the state DB was created although the replay file is missing")
	}
}
