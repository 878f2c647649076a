package engine

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// The whole recorded session (s0..s8) in geo_mode drop.
func TestRecordedSession(t *testing.T) {
	r := newRig(t, rigOpt{})
	evs := loadEvents(t, "ami-security-session.raw", recordedMap)
	r.feed(evs)
	r.sync()

	// s1 scanner (and s2, s4, s5 from the same address), s8 TCP/IPv6/netns scanners.
	for _, a := range []string{"203.0.113.11", "203.0.113.12", "2001:db8::1", "203.0.113.66"} {
		if !r.banned(a) {
			t.Errorf("%s not banned", a)
		}
		if rec := r.record(a); rec.Status != state.StatusBanned || rec.Offences != 1 {
			t.Errorf("%s: status %q offences %d, want banned/1", a, rec.Status, rec.Offences)
		}
	}
	// The phone (home country, a few ACL failures in s7) and the desk phone: untouched.
	for _, a := range []string{"198.51.100.21", "198.51.100.22"} {
		if r.banned(a) {
			t.Errorf("phone %s banned", a)
		}
		if rec := r.record(a); rec.Status != state.StatusNone {
			t.Errorf("phone %s: status %q, want none", a, rec.Status)
		}
	}
	if rec := r.record("198.51.100.21"); rec.Counts.AuthOK == 0 || rec.Counts.ACL != 2 {
		t.Errorf("phone counts %+v: want auth_ok > 0 and the 2 FailedACL of s7", rec.Counts)
	}
	// The push server (abroad, UA "Bria Push Service" in the recorded contacts) is learned.
	if !r.allowed("203.0.113.31") {
		t.Error("push server not in the allow set")
	}
	push := r.record("203.0.113.31")
	if push.Status != state.StatusLearnedPush || push.Push == nil {
		t.Fatalf("push server: status %q evidence %v", push.Status, push.Push)
	}
	if p := push.Push; p.How != state.HowUserAgent || p.UserAgent != "Bria Push Service" || p.Account != "1001" ||
		!strings.Contains(p.URI, "pn-provider=apns") || p.AOR != "1001" || p.FirstSeen.IsZero() {
		t.Errorf("push evidence %+v", *p)
	}
	if e, ok := r.fwEntry(firewall.SetAllow, "203.0.113.31"); !ok || e.Timeout != r.opts.Push.LearnTTL {
		t.Errorf("allow entry %+v: want timeout %s", e, r.opts.Push.LearnTTL)
	}
	// AMI's own failed logins (s6) come from 127.0.0.1: refused, with the reason logged.
	if !strings.Contains(r.logs.String(), "refused_because=loopback") {
		t.Error("no logged refusal for the loopback AMI failures")
	}
	// The ban comment says why.
	if e, ok := r.banEntry("203.0.113.11"); !ok || !strings.HasPrefix(e.Comment, "sipsentry: ") || e.Timeout != time.Hour {
		t.Errorf("ban entry %+v", e)
	}
	st := r.eng.Snapshot()
	if st.ActiveBans != 4 || st.Events != uint64(len(evs)) || st.LearnedAllows != 1 || st.Decisions[DecisionLearned] != 1 {
		t.Errorf("snapshot %+v", st)
	}
	// Only what an attacker did is banned: 4 bans, nothing else in the set.
	if es, _ := r.fw.List(context.Background(), firewall.SetBan); len(es) != 4 {
		t.Errorf("ban set %v", es)
	}
	sum, err := r.store.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.ActiveBans != 4 || sum.LearnedAllows != 1 || sum.Events == 0 {
		t.Errorf("summary %+v", sum)
	}
}

func (r *rig) fwEntry(set firewall.Set, a string) (firewall.Entry, bool) {
	es, err := r.fw.List(context.Background(), set)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range es {
		if e.Prefix.Contains(netip.MustParseAddr(a)) {
			return e, true
		}
	}
	return firewall.Entry{}, false
}

// s1 alone: 50 REGISTERs for unknown users; banned by user enumeration at
// the third account, long before 50.
func TestScannerS1(t *testing.T) {
	r := newRig(t, rigOpt{})
	evs := loadEvents(t, "ami-s1-scanner-register.raw", recordedMap)
	var banAt int
	for i, ev := range evs {
		r.eng.Handle(context.Background(), ev)
		if banAt == 0 && r.banned("203.0.113.11") {
			banAt = i + 1
		}
	}
	if banAt == 0 {
		t.Fatal("s1 scanner not banned")
	}
	if banAt > 6 {
		t.Errorf("banned after %d events; want by the 3rd distinct account (≤ 6 events)", banAt)
	}
	d := r.eng.Snapshot().Recent
	if len(d) == 0 || d[0].Kind != DecisionBan || !strings.Contains(d[0].Reason, "enumeration") {
		t.Errorf("decisions %+v", d)
	}
}

// s2: PJSIP brute force arrives as ChallengeResponseFailed for one account;
// the 5th failure bans.
func TestBruteForceS2(t *testing.T) {
	r := newRig(t, rigOpt{})
	evs := loadEvents(t, "ami-s2-wrong-password.raw", recordedMap)
	fails := 0
	for _, ev := range evs {
		r.eng.Handle(context.Background(), ev)
		if ev.Type == ami.EventChallengeResponseFailed {
			fails++
			if got := r.banned("203.0.113.11"); got != (fails >= 5) {
				t.Fatalf("after %d ChallengeResponseFailed banned=%v", fails, got)
			}
		}
	}
	if fails != 5 {
		t.Fatalf("recording has %d ChallengeResponseFailed, want 5", fails)
	}
	r.sync()
	if rec := r.record("203.0.113.11"); rec.Counts.AuthFailed != 5 || rec.Status != state.StatusBanned ||
		len(rec.Accounts) != 1 || rec.Accounts[0] != (activity.AccountCount{Account: "1001", Count: 5}) {
		t.Errorf("record %+v", rec)
	}
}

// A ChallengeSent for a known account followed by SuccessfulAuth (s3) is
// normal traffic: the phone registers over and over and is never banned.
func TestPhoneNeverBanned(t *testing.T) {
	r := newRig(t, rigOpt{})
	evs := loadEvents(t, "ami-s3-register-ok-push.raw", recordedMap)
	for range 50 {
		r.feed(evs)
		r.clock.Advance(time.Minute)
	}
	r.sync()
	for _, a := range []string{"198.51.100.21", "198.51.100.22"} {
		if r.banned(a) {
			t.Errorf("%s banned", a)
		}
		if rec := r.record(a); rec.Counts.Failures() != 0 || rec.Counts.AuthOK == 0 {
			t.Errorf("%s counts %+v", a, rec.Counts)
		}
	}
}

// s9: every request came from 127.0.0.13 (here 203.0.113.13); 6.6.6.6 only
// exists inside payloads. The forged SuccessfulAuth must teach nothing.
func TestInjectionS9(t *testing.T) {
	r := newRig(t, rigOpt{})
	evs := loadEvents(t, "ami-s9-injection.raw", recordedMap)
	injected := 0
	for _, ev := range evs {
		if ev.Remote.IsValid() && ev.Remote.Addr() == netip.MustParseAddr("6.6.6.6") {
			t.Fatalf("the ami parser attributed an event to 6.6.6.6: %+v", ev)
		}
		if ev.IsInjection() {
			injected++
		}
	}
	if injected == 0 {
		t.Fatal("no event with injection evidence in s9")
	}
	// Raise the thresholds so that only the injection rule can ban.
	nc := testConfig()
	nc.MaxFailures, nc.SlowMaxFailures, nc.EnumAccounts = 1000, 0, 0
	if err := r.eng.Reload(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	firstInj := -1
	for i, ev := range evs {
		r.eng.Handle(context.Background(), ev)
		if ev.IsInjection() && firstInj < 0 {
			firstInj = i
			if !r.banned("203.0.113.13") {
				t.Fatal("injection event did not ban its true source at once")
			}
		}
		if firstInj < 0 && r.banned("203.0.113.13") {
			t.Fatalf("banned before any injection evidence (event %d)", i)
		}
	}
	r.sync()
	if r.banned("6.6.6.6") {
		t.Error("6.6.6.6 banned")
	}
	if es, _ := r.fw.List(context.Background(), firewall.SetBan); len(es) != 1 {
		t.Errorf("ban set %v, want only 203.0.113.13", es)
	}
	if es, _ := r.fw.List(context.Background(), firewall.SetAllow); len(es) != 0 {
		t.Errorf("allow set %v: the forged SuccessfulAuth taught something", es)
	}
	// s9-18's made-up nonce is rightly noted as blind evidence
	// (FlagBlind); no other note may appear.
	fs, _ := r.store.Flags(context.Background())
	fs = slices.DeleteFunc(fs, func(f state.Flag) bool { return f.Kind == FlagBlind })
	if len(fs) != 0 {
		t.Errorf("flags %v: a forged SuccessfulAuth must not even count as a login", fs)
	}
	recs, _ := r.store.Sources(context.Background())
	for _, rec := range recs {
		if rec.Addr == netip.MustParseAddr("6.6.6.6") {
			t.Errorf("6.6.6.6 has a source record: %+v", rec)
		}
	}
	rec := r.record("203.0.113.13")
	if rec.Counts.Injection == 0 || rec.Counts.AuthOK != 0 || !strings.Contains(rec.Note, "injection") {
		t.Errorf("record %+v", rec)
	}
	if r.eng.Snapshot().Malformed == 0 {
		t.Error("s9-11's cut-off InvalidAccountID (no RemoteAddress) not counted as malformed")
	}
	// With default thresholds the same stream bans it too (it fails a lot).
	r2 := newRig(t, rigOpt{})
	r2.feed(evs)
	if !r2.banned("203.0.113.13") || r2.banned("6.6.6.6") {
		t.Error("default thresholds: want 203.0.113.13 banned and 6.6.6.6 not")
	}
}

// A foreign login that is neither a known push UA nor a confirmed push PTR
// (a stolen password looks the same) is flagged, not learned.
func TestForeignLoginFlagged(t *testing.T) {
	// Here the phone sits abroad: its UA "Bria iOS ..." is not a push UA.
	m := map[string]string{}
	for k, v := range recordedMap {
		m[k] = v
	}
	m["127.0.0.21"] = "203.0.113.21"
	r := newRig(t, rigOpt{deps: func(d *Deps) { d.Contacts = &fakeContacts{list: recordedContacts(t, m)} }})
	r.feed(loadEvents(t, "ami-s3-register-ok-push.raw", m))
	r.sync()
	if r.allowed("203.0.113.21") {
		t.Error("foreign phone learned as a push server")
	}
	rec := r.record("203.0.113.21")
	if rec.Status != state.StatusFlagged || !strings.Contains(rec.Note, "Bria iOS") || rec.LastUserAgent == "" {
		t.Errorf("record %+v", rec)
	}
	if !strings.Contains(r.logs.String(), "level=WARN msg=\"engine: foreign login flagged") {
		t.Error("no warning logged")
	}
	// The real push server in the same recording is still learned.
	if !r.allowed("203.0.113.31") {
		t.Error("push server not learned")
	}
}

// A push server whose UA says nothing is learned by forward-confirmed PTR
// in push.domains; a PTR that does not resolve back is not evidence.
func TestPushLearnedByPTR(t *testing.T) {
	ds := startDNS(t,
		map[string]string{"203.0.113.31": "push-eu.softphone.com", "203.0.113.41": "push-fake.softphone.com"},
		map[string][]string{"push-eu.softphone.com": {"203.0.113.31", "2001:db8::31"}, "push-fake.softphone.com": {"203.0.113.99"}})
	res, err := NewDNSResolver(ds.addr)
	if err != nil {
		t.Fatal(err)
	}
	contacts := &fakeContacts{list: []ami.Contact{
		{ObjectName: "1001;@aa", Endpoint: "1001", URI: "sip:1001@203.0.113.31:5062", UserAgent: "PushProxy/2", ViaAddr: "203.0.113.31"},
		{ObjectName: "1001;@bb", Endpoint: "1001", URI: "sip:1001@203.0.113.41:5062", UserAgent: "PushProxy/2", ViaAddr: "203.0.113.41"},
	}}
	r := newRig(t, rigOpt{resolver: res, deps: func(d *Deps) { d.Contacts = contacts }})
	ok := ev(ami.EventSuccessfulAuth, "1001", "203.0.113.31", "c1")
	ok.Severity = "Informational"
	r.eng.Handle(context.Background(), ok)
	ok2 := ev(ami.EventSuccessfulAuth, "1001", "203.0.113.41", "c2")
	r.eng.Handle(context.Background(), ok2)
	r.sync()
	if !r.allowed("203.0.113.31") {
		t.Fatal("not learned by PTR")
	}
	rec := r.record("203.0.113.31")
	if rec.Push == nil || rec.Push.How != state.HowPTR || rec.Push.PTR != "push-eu.softphone.com" || rec.Push.UserAgent != "PushProxy/2" {
		t.Errorf("evidence %+v", rec.Push)
	}
	if r.allowed("203.0.113.41") {
		t.Error("learned on a PTR that does not resolve back to the address")
	}
	if rec := r.record("203.0.113.41"); rec.Status != state.StatusFlagged {
		t.Errorf("unconfirmed PTR: status %q, want flagged", rec.Status)
	}
	// Learned means never banned, and a later sighting refreshes the allow.
	for i := range 10 {
		r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.31", "x"+string(rune('a'+i))))
	}
	if r.banned("203.0.113.31") {
		t.Error("learned push server banned")
	}
	r.clock.Advance(24 * time.Hour)
	r.eng.Handle(context.Background(), ok)
	r.sync()
	if e, ok := r.fwEntry(firewall.SetAllow, "203.0.113.31"); !ok || e.Timeout != r.opts.Push.LearnTTL {
		t.Errorf("allow not refreshed: %+v", e)
	}
}

// push.hosts are resolved (A and AAAA) through push.resolver at Start and
// put in the allow set in one bulk add.
func TestSeedPushHosts(t *testing.T) {
	ds := startDNS(t, nil, map[string][]string{
		"push-eu.softphone.com": {"203.0.113.50", "2001:db8::50"},
		"push-jp.softphone.com": {"203.0.113.51"},
	})
	r := newRig(t, rigOpt{cfg: func(c *Options) {
		c.Push.Hosts = []string{"push-eu.softphone.com", "push-jp.softphone.com", "push-gone.softphone.com"}
		c.Push.Resolver = ds.addr
	}})
	r.sync()
	for _, a := range []string{"203.0.113.50", "2001:db8::50", "203.0.113.51"} {
		if !r.allowed(a) {
			t.Errorf("%s not seeded", a)
		}
	}
	adds := 0
	for _, op := range r.fw.Ops() {
		if op.Verb == "add" && op.Set == firewall.SetAllow {
			adds++
		}
	}
	if adds != 1 {
		t.Errorf("%d allow adds, want one bulk add", adds)
	}
	al, err := r.store.LearnedAllows(context.Background())
	if err != nil || len(al) != 3 || al[0].How != state.HowSeed || al[0].PTR == "" {
		t.Errorf("stored allows %+v %v", al, err)
	}
	// A seeded push server is never banned.
	for i := range 6 {
		r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "u"+string(rune('a'+i)), "203.0.113.50", ""))
	}
	if r.banned("203.0.113.50") || !strings.Contains(r.logs.String(), "learned push server (seed)") {
		t.Error("seeded push server banned or refusal not logged")
	}
}

// Offences survive a restart: reopen the DB, the second ban is ×4.
func TestEscalationAcrossRestart(t *testing.T) {
	clock := newClock()
	dbPath := t.TempDir() + "/" + state.FileName
	brute := func(r *rig, tag string) {
		for i := range 5 {
			r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.77", tag+string(rune('a'+i))))
		}
	}
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	brute(r1, "a")
	if e, ok := r1.banEntry("203.0.113.77"); !ok || e.Timeout != time.Hour {
		t.Fatalf("first ban %+v %v, want 1h", e, ok)
	}
	r1.stop()

	// Restart within the ban: it is restored, in one bulk add.
	clock.Advance(10 * time.Minute)
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	if e, ok := r2.banEntry("203.0.113.77"); !ok || e.Timeout != 50*time.Minute {
		t.Fatalf("restored ban %+v %v, want 50m left", e, ok)
	}
	banAdds := 0
	for _, op := range r2.fw.Ops() {
		if op.Verb == "add" && op.Set == firewall.SetBan {
			banAdds++
		}
	}
	if banAdds != 1 {
		t.Errorf("%d ban adds at Start, want 1 bulk add", banAdds)
	}
	r2.stop()

	// After expiry and another restart, the next ban is ban_time × 4.
	clock.Advance(2 * time.Hour)
	r3 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	if r3.banned("203.0.113.77") {
		t.Fatal("expired ban restored")
	}
	brute(r3, "b")
	if e, ok := r3.banEntry("203.0.113.77"); !ok || e.Timeout != 4*time.Hour {
		t.Fatalf("second ban %+v, want 4h", e)
	}
	r3.sync()
	if rec := r3.record("203.0.113.77"); rec.Offences != 2 || rec.Counts.AuthFailed != 10 {
		t.Errorf("record %+v: want offences 2 and 10 failures over both sessions", rec)
	}
	// Escalation is capped at max_ban_time.
	if d := r3.eng.banDuration(20); d != r3.opts.MaxBanTime {
		t.Errorf("offence 20: %s, want max_ban_time", d)
	}
}

// Never ban static allows, loopback, the host's own addresses, the AMI peer.
func TestNeverBan(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(c *Options) {
		c.StaticAllows = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}
		c.AMIPeers = []netip.Addr{netip.MustParseAddr("198.51.100.250")}
	}})
	cases := map[string]string{
		"203.0.113.5":    "static allow 203.0.113.0/28",
		"127.0.0.1":      "loopback",
		"::1":            "loopback",
		"198.51.100.1":   "host's own address",
		"198.51.100.250": "AMI peer",
	}
	for a, why := range cases {
		for i := range 6 {
			e := ev(ami.EventInvalidPassword, "admin", a, "")
			e.Service = "AMI"
			_ = i
			r.eng.Handle(context.Background(), e)
		}
		if r.banned(a) {
			t.Errorf("%s banned", a)
		}
		if !strings.Contains(r.logs.String(), "addr="+a) || !strings.Contains(r.logs.String(), why) {
			t.Errorf("%s: refusal with reason %q not logged", a, why)
		}
	}
	if !r.allowed("203.0.113.5") {
		t.Error("static allow not in the allow set after Start")
	}
	if n := r.eng.Snapshot().Decisions[DecisionRefused]; n < uint64(len(cases)) {
		t.Errorf("%d refused decisions", n)
	}
	r.sync()
	if rec := r.record("203.0.113.5"); rec.Status != state.StatusAllowed {
		t.Errorf("static-allowed source status %q", rec.Status)
	}
}

// strict: a source outside the allowed countries is banned at its first
// failure; a home source keeps the normal thresholds.
func TestGeoStrict(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(c *Options) { c.GeoMode = GeoStrict }})
	r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "100", "203.0.113.90", "s1"))
	if !r.banned("203.0.113.90") {
		t.Error("foreign source not banned at its first failure")
	}
	r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "100", "198.51.100.90", "s2"))
	if r.banned("198.51.100.90") {
		t.Error("home source banned at its first failure")
	}
	// A foreign success is no failure.
	r.eng.Handle(context.Background(), ev(ami.EventSuccessfulAuth, "1001", "203.0.113.91", "s3"))
	if r.banned("203.0.113.91") {
		t.Error("foreign success banned")
	}
}

// monitor: decide and record, but the kernel ban set stays untouched.
func TestGeoMonitor(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(c *Options) { c.Enforce = false }})
	r.feed(loadEvents(t, "ami-security-session.raw", recordedMap))
	r.sync()
	for _, op := range r.fw.Ops() {
		if op.Set == firewall.SetBan || op.Verb == "dropflows" {
			t.Errorf("monitor mode touched the kernel: %s", op)
		}
	}
	st := r.eng.Snapshot()
	if st.WouldBans != 4 || st.ActiveBans != 0 || st.Decisions[DecisionWouldBan] != 4 {
		t.Errorf("snapshot %+v", st)
	}
	if rec := r.record("203.0.113.11"); rec.Status != state.StatusWouldBan || rec.BannedUntil.IsZero() || !strings.Contains(rec.Note, "would ban") {
		t.Errorf("record %+v", rec)
	}
	sum, _ := r.store.Summary(context.Background())
	if sum.ActiveBans != 0 || sum.WouldBans != 4 {
		t.Errorf("summary %+v", sum)
	}
	// Push learning still works in monitor mode (the allow set drops nothing).
	if !r.allowed("203.0.113.31") {
		t.Error("push server not learned in monitor mode")
	}
}

// Slow scan: 20 failures spread over hours, never 5 in 10 minutes.
func TestSlowScan(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(c *Options) { c.EnumAccounts = 0 }})
	for i := range 20 {
		if r.banned("203.0.113.60") {
			t.Fatalf("banned after %d slow failures", i)
		}
		r.eng.Handle(context.Background(), ev(ami.EventChallengeSent, ami.UnknownAccount, "203.0.113.60", "slow"+string(rune('A'+i))))
		r.clock.Advance(30 * time.Minute)
	}
	if !r.banned("203.0.113.60") {
		t.Fatal("slow scanner (20 ChallengeSent <unknown> in 10h) not banned")
	}
	if d := r.eng.Snapshot().Recent; !strings.Contains(d[len(d)-1].Reason, "slow scan") {
		t.Errorf("decision %+v", d[len(d)-1])
	}
}

// The sliding window forgets old failures: 4 now, 4 after find_time is no ban.
func TestWindowSlides(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(c *Options) { c.SlowMaxFailures = 0 }})
	for round := range 2 {
		for i := range 4 {
			r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.61", string(rune('a'+round*4+i))))
		}
		r.clock.Advance(11 * time.Minute)
	}
	if r.banned("203.0.113.61") {
		t.Error("banned for 8 failures spread over two find_time windows")
	}
	r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.61", "z"))
	if r.banned("203.0.113.61") {
		t.Error("banned with only 1 failure in the window")
	}
}

// SIGHUP: a new static allow is put in the set and protects at once; a
// removed one leaves the set; geo_mode switches.
func TestReload(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(c *Options) {
		c.StaticAllows = []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25")}
	}})
	nc := testConfig()
	nc.StaticAllows = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/25")}
	nc.Enforce = false // was geo_mode "monitor": firewall.mode alone decides now
	if err := r.eng.Reload(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	if !r.allowed("203.0.113.5") || r.allowed("203.0.113.200") {
		t.Error("allow set not updated: want 203.0.113.0/25 in, 203.0.113.128/25 out")
	}
	for i := range 6 {
		r.eng.Handle(context.Background(), ev(ami.EventInvalidPassword, "1001", "203.0.113.5", string(rune('a'+i))))
		r.eng.Handle(context.Background(), ev(ami.EventInvalidPassword, "1001", "203.0.113.200", string(rune('a'+i))))
	}
	if r.banned("203.0.113.5") || r.banned("203.0.113.200") {
		t.Error("kernel ban after reload to monitor / into a static allow")
	}
	if st := r.eng.Snapshot(); st.Enforce || st.WouldBans != 1 {
		t.Errorf("snapshot %+v: want monitor and one would-ban (203.0.113.200)", st)
	}
	// Back to enforcing: the would-banned source is banned for real at its
	// next failure, as the same offence (1h).
	nc.Enforce = true
	if err := r.eng.Reload(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	r.eng.Handle(context.Background(), ev(ami.EventInvalidPassword, "1001", "203.0.113.200", "z"))
	if e, ok := r.banEntry("203.0.113.200"); !ok || e.Timeout != time.Hour {
		t.Errorf("would-ban not enforced after switching to drop: %+v %v", e, ok)
	}
	bad := testConfig()
	bad.MaxFailures = 0
	if err := r.eng.Reload(context.Background(), bad); err == nil {
		t.Error("reload accepted max_failures = 0")
	}
}

// Learned push servers survive a restart (restored into the allow set) and
// an unban lifts a ban at once while keeping the offence count.
func TestRestoreAllowsAndUnban(t *testing.T) {
	clock := newClock()
	dbPath := t.TempDir() + "/" + state.FileName
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	r1.feed(loadEvents(t, "ami-s3-register-ok-push.raw", recordedMap))
	r1.sync()
	if !r1.allowed("203.0.113.31") {
		t.Fatal("push server not learned")
	}
	for i := range 5 {
		r1.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.78", string(rune('a'+i))))
	}
	if err := r1.eng.Unban(context.Background(), netip.MustParseAddr("203.0.113.78"), 0); err != nil {
		t.Fatal(err)
	}
	if r1.banned("203.0.113.78") {
		t.Error("still banned after Unban")
	}
	r1.stop()
	clock.Advance(time.Hour)
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	if e, ok := r2.fwEntry(firewall.SetAllow, "203.0.113.31"); !ok || e.Timeout != r2.opts.Push.LearnTTL-time.Hour {
		t.Errorf("learned allow not restored with its remaining time: %+v %v", e, ok)
	}
	if r2.banned("203.0.113.78") {
		t.Error("lifted ban restored")
	}
	for i := range 5 {
		r2.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.78", string(rune('k'+i))))
	}
	if e, ok := r2.banEntry("203.0.113.78"); !ok || e.Timeout != 4*time.Hour {
		t.Errorf("ban after unban %+v: want offence 2 (4h)", e)
	}
}

// Enumeration counts accounts tried within the windows, not over the life
// of the aggregate.
func TestEnumerationWindowed(t *testing.T) {
	// The SuccessfulAuth keeps the aggregate in memory; with known_for it
	// would also make the address known (UDP failures then only flag it,
	// TestForgedCases), which is not what this test is about.
	r := newRig(t, rigOpt{cfg: func(c *Options) { c.KnownFor = 0 }})
	r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.70", "a"))
	r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1002", "203.0.113.70", "b"))
	r.clock.Advance(23 * time.Hour) // keeps the aggregate in memory (seen within slow_find_time)
	r.eng.Handle(context.Background(), ev(ami.EventSuccessfulAuth, "1001", "203.0.113.70", "ok"))
	r.clock.Advance(2 * time.Hour)
	r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1003", "203.0.113.70", "c"))
	if r.banned("203.0.113.70") {
		t.Error("banned for 3 accounts spread over 25 hours")
	}
	r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1004", "203.0.113.70", "d"))
	r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1005", "203.0.113.70", "e"))
	if !r.banned("203.0.113.70") {
		t.Error("3 accounts in a row not banned")
	}
}
