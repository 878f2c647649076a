package ariwatch

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/internal/ariwatch/aritest"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// testdata finds ../shared/testdata/asterisk relative to the repo root.
func testdata(t *testing.T, name string) string {
	t.Helper()
	return testpath.Shared(t, "asterisk", name)
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			out = append(out, slices.Clone(sc.Bytes()))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newWatcher(t *testing.T, f *aritest.Server, pass string) *Watcher {
	t.Helper()
	w, err := New(Config{URL: f.URL(), Username: "ari", Password: pass, Application: "sentry",
		Timeout: 5 * time.Second, ReconnectMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// waitFor polls cond; the limit is a liveness bound, not a speed assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runWatcher(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRecordedEventsTrackContactsAndPeers(t *testing.T) {
	lines := readLines(t, testdata(t, "ari-events.jsonl"))
	if len(lines) != 16 {
		t.Fatalf("ari-events.jsonl has %d lines, the README says 16", len(lines))
	}
	f := aritest.NewServer(t, aritest.Options{})
	w := newWatcher(t, f, "ari-secret")
	runWatcher(t, w)
	waitFor(t, "websocket connection", func() bool { return w.Connected() && f.Connections() == 1 })

	// Lines 1-9: both 1001 contacts qualified, 1002 registered, both peers up.
	f.Send(lines[:9]...)
	waitFor(t, "9 events", func() bool { return w.Events() == 9 })
	got := map[string]string{}
	for _, c := range w.Contacts() {
		got[c.URI[:strings.IndexByte(c.URI, ';')]] = c.Status
	}
	want := map[string]string{
		"sip:1001@127.0.0.21:5061": "Reachable",
		"sip:1001@127.0.0.31:5062": "Reachable",
		"sip:1002@127.0.0.22:5063": "NonQualified",
	}
	if !equalMaps(got, want) {
		t.Errorf("contacts after line 9 = %v, want %v", got, want)
	}
	peers := map[string]string{}
	for _, p := range w.Peers() {
		peers[p.Endpoint] = p.Status
	}
	if !equalMaps(peers, map[string]string{"PJSIP/1001": "Reachable", "PJSIP/1002": "Reachable"}) {
		t.Errorf("peers after line 9 = %v", peers)
	}
	c0 := w.Contacts()[0]
	if c0.AOR != "1001" || c0.Endpoint != "PJSIP/1001" || c0.RoundtripUsec != "314" ||
		!c0.Updated.Equal(time.Date(2026, 11, 25, 13, 12, 21, 517e6, time.UTC)) {
		t.Errorf("first contact = %+v", c0)
	}

	// The rest un-registers everything: every contact Removed, both peers down.
	f.Send(lines[9:]...)
	waitFor(t, "16 events", func() bool { return w.Events() == 16 })
	if cs := w.Contacts(); len(cs) != 0 {
		t.Errorf("contacts after the un-REGISTERs = %+v, want none", cs)
	}
	peers = map[string]string{}
	for _, p := range w.Peers() {
		peers[p.Endpoint] = p.Status
	}
	if !equalMaps(peers, map[string]string{"PJSIP/1001": "Unreachable", "PJSIP/1002": "Unreachable"}) {
		t.Errorf("peers at the end = %v", peers)
	}
	q := f.WebsocketQueries()[0]
	if !strings.Contains(q, "app=sentry") || !strings.Contains(q, "subscribeAll=true") || strings.Contains(q, "api_key") {
		t.Errorf("websocket query %q: want app and subscribeAll, and no api_key", q)
	}
}

func TestUnknownAndBrokenEventsAreIgnored(t *testing.T) {
	f := aritest.NewServer(t, aritest.Options{Password: "pw"})
	w := newWatcher(t, f, "pw")
	runWatcher(t, w)
	waitFor(t, "connection", func() bool { return w.Connected() && f.Connections() == 1 })
	f.Send([][]byte{
		[]byte(`{"type":"SomeFutureEvent","application":"sentry"}`),
		[]byte(`not json`),
		[]byte(`{"type":"ContactStatusChange","timestamp":"bad","contact_info":{}}`),
		[]byte(`{"type":"PeerStatusChange","timestamp":"2026-11-25T13:12:21.517+0000","endpoint":{"technology":"PJSIP","resource":"7"},"peer":{"peer_status":"Reachable"}}`),
	}...)
	waitFor(t, "events", func() bool { return len(w.Peers()) == 1 })
	if !w.Connected() {
		t.Error("an unknown or broken event dropped the connection")
	}
	if n := w.Events(); n != 3 {
		t.Errorf("counted %d typed events, want 3 (the non-JSON one is not an event)", n)
	}
	if len(w.Contacts()) != 0 {
		t.Errorf("a ContactStatusChange with a bad timestamp was applied: %+v", w.Contacts())
	}
}

func TestHangupSourceOnlyHangsUpThatSource(t *testing.T) {
	f := aritest.NewServer(t, aritest.Options{})
	f.SetChannels([]aritest.Channel{
		{ID: "1700000001.1", Name: "PJSIP/1001-00000001", RemoteAddr: "198.51.100.21:5061"}, // the user's phone
		{ID: "1700000001.2", Name: "PJSIP/1001-00000002", RemoteAddr: "203.0.113.11:5070"},  // the banned source
		{ID: "1700000001.3", Name: "PJSIP/9000-00000003", RemoteAddr: "203.0.113.110:5060"}, // a prefix look-alike
		{ID: "1700000001.4", Name: "PJSIP/9000-00000004", RemoteAddr: "[2001:db8::66]:5060"},
		{ID: "1700000001.5", Name: "Local/900@default-00000001;1", RemoteAddr: ""},
		{ID: "1700000001.6", Name: "PJSIP/1001-00000006", RemoteAddr: "203.0.113.11:5071"}, // same source, other port
	})
	w := newWatcher(t, f, "ari-secret")
	hung, err := w.HangupSource(context.Background(), netip.MustParseAddr("203.0.113.11"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hung, []string{"1700000001.2", "1700000001.6"}) {
		t.Errorf("hung up %v, want the two 203.0.113.11 channels", hung)
	}
	srvHung, asked := f.HungUp(), f.VariableReads()
	if !slices.Equal(srvHung, hung) {
		t.Errorf("server saw hangups %v, client reported %v", srvHung, hung)
	}
	if slices.Contains(asked, "1700000001.5") {
		t.Error("asked a Local channel for CHANNEL(pjsip,remote_addr)")
	}

	// IPv6, and an IPv4-mapped form of nothing present: only the v6 channel.
	if err := w.Hangup(context.Background(), netip.MustParseAddr("2001:db8::66")); err != nil {
		t.Fatal(err)
	}
	srvHung = f.HungUp()
	if !slices.Equal(srvHung, []string{"1700000001.2", "1700000001.6", "1700000001.4"}) {
		t.Errorf("after the v6 hangup the server saw %v", srvHung)
	}
	// Nothing of that source left: no error, nothing hung up.
	hung, err = w.HangupSource(context.Background(), netip.MustParseAddr("203.0.113.11"))
	if err != nil || len(hung) != 0 {
		t.Errorf("second hangup of the same source: %v, %v", hung, err)
	}
	left := len(f.Channels())
	if left != 3 {
		t.Errorf("%d channels left, want the phone, the look-alike and the Local channel", left)
	}
}

func TestBadPasswordIsReported(t *testing.T) {
	f := aritest.NewServer(t, aritest.Options{})
	w := newWatcher(t, f, "wrong")
	_, err := w.HangupSource(context.Background(), netip.MustParseAddr("203.0.113.11"))
	var se *StatusError
	if err == nil || !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Fatalf("err = %v, want an HTTP 401 StatusError", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q contains the password", err)
	}
}

func TestReconnectsAfterAsteriskDropsTheWebsocket(t *testing.T) {
	f := aritest.NewServer(t, aritest.Options{Password: "pw"})
	w := newWatcher(t, f, "pw")
	runWatcher(t, w)
	waitFor(t, "first connection", func() bool { return w.Connected() && f.Connections() == 1 })
	f.Kick()
	waitFor(t, "second connection", func() bool { return f.Connections() >= 2 })
	waitFor(t, "connected again", w.Connected)
	lines := readLines(t, testdata(t, "ari-events.jsonl"))
	f.Send(lines[:1]...)
	waitFor(t, "event after reconnect", func() bool { return w.Events() == 1 })
}

func TestParseRemoteAddr(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.5:5060":       "203.0.113.5",
		"[2001:db8::1]:5060":     "2001:db8::1",
		"203.0.113.5":            "203.0.113.5",
		"[::ffff:203.0.113.5]:1": "203.0.113.5",
		" 198.51.100.21:5061 ":   "198.51.100.21",
		"2001:db8::1":            "2001:db8::1",
		"":                       "",
		"sip:203.0.113.5":        "",
		"203.0.113.5:5060;x=y":   "",
		"[fe80::1%eth0]:5060":    "fe80::1",
	} {
		a, ok := ParseRemoteAddr(in)
		if want == "" {
			if ok {
				t.Errorf("ParseRemoteAddr(%q) = %v, want failure", in, a)
			}
			continue
		}
		if !ok || a.String() != want {
			t.Errorf("ParseRemoteAddr(%q) = %v, %v; want %s", in, a, ok, want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{
		{URL: "", Username: "u", Password: "p"},
		{URL: "ftp://x/ari", Username: "u", Password: "p"},
		{URL: "http://127.0.0.1:8088/ari", Username: "u"},
		{URL: "http://127.0.0.1:8088/ari", Username: "u", Password: "p", WebsocketURL: "http://x/events"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted a bad config", c)
		}
	}
	w, err := New(Config{URL: "https://pbx.example:8089/ari/", Username: "u", Password: "p", Application: "a b"})
	if err != nil {
		t.Fatal(err)
	}
	if w.wsURL != "wss://pbx.example:8089/ari/events?app=a+b&subscribeAll=true" {
		t.Errorf("derived websocket URL %q", w.wsURL)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
