package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/internal/testpath"
	"github.com/sipsentry/sipsentry/state"
)

// testdataDir is ../shared/testdata/<sub> beside the directory holding go.mod.
func testdataDir(t testing.TB, sub string) string {
	t.Helper()
	return testpath.Shared(t, sub)
}

// fakeClock is a settable clock shared by the engine, the dry-run backend
// and the store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeGeo allows the prefixes it holds.
type fakeGeo []netip.Prefix

func (g fakeGeo) Allowed(a netip.Addr) bool {
	for _, p := range g {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// testGeo: 198.51.100.0/24 is the "home" country, everything else abroad.
var testGeo = fakeGeo{netip.MustParsePrefix("198.51.100.0/24")}

// recordedMap rewrites the recorded loopback roles into TEST-NET (the
// engine never bans loopback). The phone and the desk phone are at home;
// scanners, the netns attacker, the push server and the s9 injector abroad.
var recordedMap = map[string]string{
	"127.0.0.11": "203.0.113.11",
	"127.0.0.12": "203.0.113.12",
	"127.0.0.13": "203.0.113.13",
	"::1":        "2001:db8::1",
	"127.0.0.21": "198.51.100.21",
	"127.0.0.22": "198.51.100.22",
	"127.0.0.31": "203.0.113.31",
}

func rewrite(m map[string]string, a netip.Addr) netip.Addr {
	if to, ok := m[a.String()]; ok {
		return netip.MustParseAddr(to)
	}
	return a
}

// loadEvents parses a recorded AMI stream with the ami package's reader and
// returns its security events (including ErrNoSource ones, whose Remote is
// invalid), sources rewritten through m.
func loadEvents(t testing.TB, file string, m map[string]string) []ami.SecurityEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(testdataDir(t, "asterisk"), file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	r := ami.NewReader(br, ami.ReaderOptions{})
	// Only the s0/session/s9 captures start with the banner; the per-scenario
	// cuts start mid-stream.
	if head, _ := br.Peek(22); string(head) == "Asterisk Call Manager/" {
		if _, err := r.ReadBanner(); err != nil {
			t.Fatalf("%s: banner: %v", file, err)
		}
	}
	var out []ami.SecurityEvent
	for {
		msg, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !ami.IsSecurityEvent(&msg) {
			continue
		}
		ev, err := ami.ParseSecurityEvent(&msg)
		if err != nil && !errors.Is(err, ami.ErrNoSource) {
			t.Fatalf("%s: %v", file, err)
		}
		if ev.Remote.IsValid() {
			ev.Remote.AddrPort = netip.AddrPortFrom(rewrite(m, ev.Remote.Addr()), ev.Remote.AddrPort.Port())
		}
		out = append(out, ev)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no security events", file)
	}
	return out
}

// recordedContacts parses the recorded PJSIPShowContacts answer, ViaAddr
// rewritten through m.
func recordedContacts(t testing.TB, m map[string]string) []ami.Contact {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testdataDir(t, "asterisk"), "ami-action-pjsipshowcontacts.raw"))
	if err != nil {
		t.Fatal(err)
	}
	_, resp, ok := bytes.Cut(raw, []byte("#### S->C PJSIPShowContacts\r\n"))
	if !ok {
		t.Fatal("no S->C block in ami-action-pjsipshowcontacts.raw")
	}
	r := ami.NewReader(bytes.NewReader(resp), ami.ReaderOptions{})
	var out []ami.Contact
	for {
		msg, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if msg.Get("Event") != "ContactList" {
			continue
		}
		c, err := ami.ParseContact(&msg)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := netip.ParseAddr(c.ViaAddr); err == nil {
			c.ViaAddr = rewrite(m, a).String()
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no contacts in the recording")
	}
	return out
}

type fakeContacts struct {
	mu    sync.Mutex
	list  []ami.Contact
	calls int
}

func (f *fakeContacts) PJSIPShowContacts(context.Context) ([]ami.Contact, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return append([]ami.Contact(nil), f.list...), nil
}

// logBuf is a concurrency-safe log sink for assertions on log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rig is an engine wired to a dry-run backend, a fake clock, a store in a
// temp dir, the recorded contacts and (optionally) a loopback DNS server.
type rig struct {
	t      *testing.T
	opts   Options
	clock  *fakeClock
	fw     *dryrun.Backend
	store  *state.Store
	dbPath string
	eng    *Engine
	logs   *logBuf
	cancel context.CancelFunc
	done   chan error
}

type rigOpt struct {
	cfg      func(*Options)
	deps     func(*Deps)
	clock    *fakeClock
	dbPath   string
	maxElem  int
	noRun    bool
	resolver Resolver
}

// testConfig is an enforcing engine with the country policy "drop" and
// the shipped thresholds.
func testConfig() Options {
	c := DefaultOptions()
	c.Enforce = true
	c.GeoMode = GeoDrop
	c.Push.Hosts = nil // no seeding unless a test asks (no outside DNS)
	c.AMIPeers = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	return c
}

func newRig(t *testing.T, o rigOpt) *rig {
	t.Helper()
	r := &rig{t: t, opts: testConfig(), clock: o.clock, logs: &logBuf{}, dbPath: o.dbPath}
	if r.clock == nil {
		r.clock = newClock()
	}
	if o.cfg != nil {
		o.cfg(&r.opts)
	}
	if r.dbPath == "" {
		r.dbPath = filepath.Join(t.TempDir(), state.FileName)
	}
	st, err := state.Open(r.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	r.store = st
	r.fw = dryrun.New(dryrun.Options{Mode: "enforce", MaxElem: o.maxElem, Now: r.clock.Now})
	res := o.resolver
	if res == nil && r.opts.Push.Resolver == "" {
		res = noDNS{} // never the system resolver: no test touches the outside network
	}
	d := Deps{
		Firewall:     r.fw,
		Geo:          testGeo,
		Store:        st,
		Contacts:     &fakeContacts{list: recordedContacts(t, recordedMap)},
		Resolver:     res, // nil: built by New from push.resolver
		Logger:       slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:          r.clock.Now,
		HostAddrs:    []netip.Addr{netip.MustParseAddr("198.51.100.1")},
		ContactRetry: []time.Duration{time.Millisecond},
	}
	if o.deps != nil {
		o.deps(&d)
	}
	if fb, ok := d.Firewall.(*dryrun.Backend); ok {
		r.fw = fb // a test's shared backend: the rig's assertions read it
	}
	e, err := New(r.opts, d)
	if err != nil {
		t.Fatal(err)
	}
	r.eng = e
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !o.noRun {
		r.done = make(chan error, 1)
		go func() { r.done <- e.Run(ctx) }()
	}
	t.Cleanup(r.stop)
	return r
}

// stop ends Run (which flushes) and closes the store; idempotent.
func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if r.done != nil {
		if err := <-r.done; err != nil {
			r.t.Errorf("Run: %v", err)
		}
	}
	r.cancel = nil
	r.store.Close()
}

func (r *rig) feed(evs []ami.SecurityEvent) {
	for _, ev := range evs {
		r.eng.Handle(context.Background(), ev)
	}
}

func (r *rig) sync() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := r.eng.Sync(ctx); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) banned(a string) bool {
	ok, err := r.fw.Contains(context.Background(), firewall.SetBan, netip.MustParseAddr(a))
	if err != nil {
		r.t.Fatal(err)
	}
	return ok
}

func (r *rig) allowed(a string) bool {
	ok, err := r.fw.Contains(context.Background(), firewall.SetAllow, netip.MustParseAddr(a))
	if err != nil {
		r.t.Fatal(err)
	}
	return ok
}

func (r *rig) banEntry(a string) (firewall.Entry, bool) {
	es, err := r.fw.List(context.Background(), firewall.SetBan)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range es {
		if e.Prefix.Addr() == netip.MustParseAddr(a) {
			return e, true
		}
	}
	return firewall.Entry{}, false
}

func (r *rig) record(a string) state.SourceRecord {
	r.t.Helper()
	recs, err := r.store.Sources(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.Addr == netip.MustParseAddr(a) {
			return rec
		}
	}
	r.t.Fatalf("no source record for %s", a)
	return state.SourceRecord{}
}

// ev builds a PJSIP security event by hand.
func ev(typ, account, remote string, session string) ami.SecurityEvent {
	a := netip.MustParseAddr(remote)
	return ami.SecurityEvent{
		Type: typ, Service: "PJSIP", Severity: "Error", EventVersion: "1", AccountID: account, SessionID: session,
		Remote: ami.Address{Transport: "UDP", AddrPort: netip.AddrPortFrom(a, 5060)},
	}
}

// noDNS answers nothing: no test touches the outside network.
type noDNS struct{}

func (noDNS) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return nil, errors.New("no DNS in this test")
}

func (noDNS) LookupAddrs(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS in this test")
}

// dnsServer is a miekg/dns server on 127.0.0.1:0 answering from maps.
type dnsServer struct {
	addr    string
	queries int
	mu      sync.Mutex
}

func startDNS(t *testing.T, ptr map[string]string, hosts map[string][]string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ds := &dnsServer{addr: pc.LocalAddr().String()}
	mux := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		ds.mu.Lock()
		ds.queries++
		ds.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		found := false
		for _, qu := range q.Question {
			name := strings.ToLower(qu.Name)
			switch qu.Qtype {
			case dns.TypePTR:
				for ip, host := range ptr {
					arpa, _ := dns.ReverseAddr(ip)
					if arpa == name {
						found = true
						m.Answer = append(m.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: qu.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 60}, Ptr: dns.Fqdn(host)})
					}
				}
			case dns.TypeA, dns.TypeAAAA:
				for _, s := range hosts[strings.TrimSuffix(name, ".")] {
					found = true
					a := netip.MustParseAddr(s)
					hdr := dns.RR_Header{Name: qu.Name, Class: dns.ClassINET, Ttl: 60}
					if a.Is4() && qu.Qtype == dns.TypeA {
						hdr.Rrtype = dns.TypeA
						m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
					} else if a.Is6() && qu.Qtype == dns.TypeAAAA {
						hdr.Rrtype = dns.TypeAAAA
						m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
					}
				}
			}
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return ds
}

func (r *rig) logged(s string) bool { return strings.Contains(r.logs.String(), s) }
