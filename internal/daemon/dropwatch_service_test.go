package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/dropwatch"
	"github.com/sipsentry/sipsentry/dropwatch/sip"
	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/testpath"
	"github.com/sipsentry/sipsentry/state"
)

func TestDropwatchEnabled(t *testing.T) {
	c := config.Default()
	if dropwatchEnabled(c, false) {
		t.Error("enabled in monitor mode, where the firewall drops nothing")
	}
	c.Firewall.Mode = "enforce"
	if !dropwatchEnabled(c, false) || dropwatchEnabled(c, true) {
		t.Error("enforce + iptables + group: want enabled, but not for a replay")
	}
	c.Firewall.NFLogGroup = 0
	if dropwatchEnabled(c, false) {
		t.Error("nflog_group 0 must turn it off")
	}
	c.Firewall.NFLogGroup, c.Firewall.Backend = 5060, "dry-run"
	if dropwatchEnabled(c, false) {
		t.Error("the dry-run backend installs no NFLOG rule")
	}
}

type calls struct {
	mu sync.Mutex // guards l
	l  []string
}

func (c *calls) add(s string) { c.mu.Lock(); c.l = append(c.l, s); c.mu.Unlock() }
func (c *calls) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.l, "; ")
}
func (c *calls) AdmitSIP(_ context.Context, a netip.Addr, _ time.Duration) error {
	c.add("admit " + a.String())
	return nil
}
func (c *calls) Revoke(_ context.Context, a netip.Addr) error {
	c.add("revoke " + a.String())
	return nil
}
func (c *calls) Ban(_ context.Context, a netip.Addr, _ string) { c.add("ban " + a.String()) }
func (c *calls) Learn(_ context.Context, a netip.Addr, ev state.PushEvidence) error {
	c.add("learn " + a.String() + " " + ev.How + " " + ev.Account)
	return nil
}

type noPTR struct{}

func (noPTR) ConfirmedName(context.Context, netip.Addr) (string, error) { return "", nil }

// TestDropwatchSecurityEvents: the daemon's AMI path tells the probation
// what its address did: an AMI login is ignored, a PJSIP SuccessfulAuth
// learns, a ChallengeResponseFailed bans.
func TestDropwatchSecurityEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &calls{}
	prob := dropwatch.NewProbation(dropwatch.ProbationOptions{
		Policy:   dropwatch.Policy{UserAgents: []*regexp.Regexp{regexp.MustCompile(`^Bria Push`)}, Duration: time.Minute, MaxPerHour: 10},
		Resolver: noPTR{}, Gate: c, Banner: c, Learner: c, Log: slog.New(slog.DiscardHandler),
	})
	go prob.Run(ctx)
	s := &dropwatchService{prob: prob}
	req := sip.Request{Method: "REGISTER", ToUser: "1001", UserAgent: "Bria Push Service", Push: sip.PNPrid}
	a, b := netip.MustParseAddr("203.0.113.66"), netip.MustParseAddr("203.0.113.68")
	prob.Consider(a, req, "XX")
	prob.Consider(b, req, "XX")
	deadline := time.Now().Add(5 * time.Second)
	for !prob.OnProbation(a) || !prob.OnProbation(b) {
		if time.Now().After(deadline) {
			t.Fatalf("no probations: %s", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ev := func(typ, service string, src netip.Addr) *ami.SecurityEvent {
		return &ami.SecurityEvent{Type: typ, Service: service, AccountID: "1001",
			Remote: ami.Address{Transport: "UDP", AddrPort: netip.AddrPortFrom(src, 5060)}}
	}
	s.securityEvent(ctx, ev(ami.EventSuccessfulAuth, "AMI", a))  // not a SIP registration
	s.securityEvent(ctx, ev(ami.EventChallengeSent, "PJSIP", a)) // the normal 401
	if !prob.OnProbation(a) {
		t.Fatal("an AMI login or a challenge ended the probation")
	}
	s.securityEvent(ctx, ev(ami.EventSuccessfulAuth, "PJSIP", a))
	s.securityEvent(ctx, ev(ami.EventChallengeResponseFailed, "PJSIP", b))
	s.securityEvent(ctx, ev(ami.EventChallengeResponseFailed, "PJSIP", b)) // the retry: acts once
	wants := []string{"learn 203.0.113.66 user_agent 1001", "revoke 203.0.113.68", "ban 203.0.113.68"}
	deadline = time.Now().Add(5 * time.Second)
	for {
		got, n := c.String(), 0
		for _, want := range wants {
			if strings.Contains(got, want) {
				n++
			}
		}
		if n == len(wants) {
			if strings.Count(got, "ban 203.0.113.68") != 1 {
				t.Fatalf("two failures banned twice: %s", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls %q lack some of %q", got, wants)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var nilSvc *dropwatchService
	nilSvc.securityEvent(ctx, ev(ami.EventSuccessfulAuth, "PJSIP", a)) // drop mode off: no-op
}

type fakeDNS struct {
	ptr   map[netip.Addr][]string
	addrs map[string][]netip.Addr
}

func (f fakeDNS) LookupPTR(_ context.Context, a netip.Addr) ([]string, error) { return f.ptr[a], nil }
func (f fakeDNS) LookupAddrs(_ context.Context, h string) ([]netip.Addr, error) {
	return f.addrs[h], nil
}

func TestFCrDNS(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.66")
	r := fcrdns{fakeDNS{
		ptr: map[netip.Addr][]string{a: {"liar.softphone.com.", "Push-New.Softphone.com."}},
		addrs: map[string][]netip.Addr{"liar.softphone.com.": {netip.MustParseAddr("203.0.113.1")},
			"Push-New.Softphone.com.": {a}},
	}}
	if n, err := r.ConfirmedName(context.Background(), a); err != nil || n != "push-new.softphone.com" {
		t.Fatalf("got %q, %v; want the name whose forward records hold the address", n, err)
	}
	if n, _ := r.ConfirmedName(context.Background(), netip.MustParseAddr("203.0.113.9")); n != "" {
		t.Fatalf("no PTR: got %q", n)
	}
}

type foreignGeo struct{}

func (foreignGeo) Allowed(netip.Addr) bool { return false }

type noDNS struct{}

func (noDNS) LookupPTR(context.Context, netip.Addr) ([]string, error)   { return nil, nil }
func (noDNS) LookupAddrs(context.Context, string) ([]netip.Addr, error) { return nil, nil }

// TestDropwatchAdaptersOnEngine: the probation's admission, revocation,
// ban and learning go through the engine (one truth for the allow set, so
// drift repair keeps them), on a dry-run firewall.
func TestDropwatchAdaptersOnEngine(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fw := dryrun.New(dryrun.Options{Mode: "enforce"})
	o := engine.DefaultOptions()
	o.Enforce, o.GeoMode, o.Push.Hosts = true, engine.GeoDrop, nil
	eng, err := engine.New(o, engine.Deps{Firewall: fw, Geo: foreignGeo{}, Store: st, Resolver: noDNS{},
		HostAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(rctx) }()
	defer func() { cancel(); <-done }()

	cfg := config.Default()
	d := &daemon{cfg: cfg, eng: eng, store: st, fw: fw, probations: map[netip.Addr]admission{}}
	a := netip.MustParseAddr("203.0.113.66")
	p := netip.PrefixFrom(a, 32)
	in := func(set firewall.Set) bool {
		ok, err := fw.Contains(ctx, set, a)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	listed := func() (firewall.Entry, bool) {
		for _, e := range d.probationEntries(time.Now()) {
			if e.Prefix == p {
				return e, true
			}
		}
		return firewall.Entry{}, false
	}
	// A probation opens the UDP SIP ports only: its own set, not the allow
	// set (which opens RTP too).
	gate := probationGate{d}
	if err := gate.AdmitSIP(ctx, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if e, ok := listed(); !ok || !in(firewall.SetProbation) || in(firewall.SetAllow) || e.Timeout > time.Minute {
		t.Fatalf("admission: desired %+v %v, in the probation set %v, in the allow set %v", e, ok, in(firewall.SetProbation), in(firewall.SetAllow))
	}
	if err := gate.Revoke(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := gate.Revoke(ctx, a); err != nil {
		t.Fatalf("a second revoke (expired meanwhile) is no error: %v", err)
	}
	if _, ok := listed(); ok || in(firewall.SetProbation) {
		t.Fatal("revoked admission still there")
	}
	engineBanner{eng}.Ban(ctx, a, "failed authentication during push probation")
	if !in(firewall.SetBan) {
		t.Fatal("the probation's failure did not ban through the engine")
	}

	b := netip.MustParseAddr("203.0.113.67")
	ev := state.PushEvidence{How: state.HowPTR, PTR: "push-new.softphone.com", UserAgent: "Bria Push Service"}
	if err := (learner{d: d}).Learn(ctx, b, ev); err != nil {
		t.Fatal(err)
	}
	var r engine.AllowRecord
	for _, x := range eng.Allows(time.Now()) {
		if x.Prefix == netip.PrefixFrom(b, 32) {
			r = x
		}
	}
	if ok, _ := fw.Contains(ctx, firewall.SetAllow, b); !ok || r.Kind != engine.AllowLearned || r.Push == nil ||
		r.Push.PTR != "push-new.softphone.com" || r.Until.Sub(time.Now()) < o.Push.LearnTTL-time.Minute {
		t.Fatalf("learned push server: in the allow set %v, record %+v", ok, r)
	}
}

// recordedAors answers PJSIPShowAors with the recorded Asterisk 22 answer.
type recordedAors struct {
	t   *testing.T
	err error
}

func (r recordedAors) ListAction(_ context.Context, m ami.Message) ([]ami.Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if m.Get("Action") != "PJSIPShowAors" {
		r.t.Fatalf("action %q", m.Get("Action"))
	}
	raw, err := os.ReadFile(testpath.Shared(r.t, "asterisk", "ami-action-pjsipshowaors.raw"))
	if err != nil {
		r.t.Fatal(err)
	}
	_, s2c, ok := bytes.Cut(raw, []byte("#### S->C PJSIPShowAors\r\n"))
	if !ok {
		r.t.Fatal("no S->C block")
	}
	rd := ami.NewReader(bytes.NewReader(s2c), ami.ReaderOptions{})
	var items []ami.Message
	for {
		msg, err := rd.ReadMessage()
		if err != nil {
			break
		}
		if msg.Get("Event") == "AorList" {
			items = append(items, msg)
		}
	}
	return items, nil
}

// TestAORSet: push parameters count only for an AOR Asterisk lists; before
// any answer (or while AMI fails) every name passes.
func TestAORSet(t *testing.T) {
	var s aorSet
	if !s.exists("9999") {
		t.Fatal("before the first answer every AOR must pass")
	}
	if err := s.refresh(context.Background(), recordedAors{t: t, err: errors.New("ami: closed")}); err == nil || !s.exists("9999") {
		t.Fatal("a failed refresh must keep the permissive state")
	}
	if err := s.refresh(context.Background(), recordedAors{t: t}); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]bool{"1001": true, "1002": true, "acl1003": true, "9999": false, "": false, "1001;x": false} {
		if s.exists(user) != want {
			t.Errorf("exists(%q) = %v, want %v", user, !want, want)
		}
	}
}
