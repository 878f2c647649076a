// Package e2e runs the real sipsentry binary against a scriptable AMI server
// replaying the recorded Asterisk 22 streams, with its firewall inside a
// network namespace, and checks the kernel's sets and the state DB.
//
// It needs root, ip, ipset and iptables; off CI it skips without them, under
// CI=true it fails. It never touches the host's own namespace.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/ariwatch/aritest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/internal/testpath"
	"github.com/sipsentry/sipsentry/state"
)

// Loopback sources of the recordings and where the test puts them.
var rewrite = []struct{ from, to string }{
	{"127.0.0.11", "203.0.113.11"},  // scanner (UDP): foreign
	{"127.0.0.12", "203.0.113.12"},  // scanner (TCP): foreign
	{"::1", "2001:db8:ff::1"},       // scanner (IPv6): foreign
	{"127.0.0.13", "203.0.113.13"},  // s9 injector: foreign
	{"127.0.0.21", "198.51.100.21"}, // the user's phone: allowed country
	{"127.0.0.22", "203.0.113.22"},  // desk phone 1002 logging in from abroad: a stolen password
	{"127.0.0.31", "203.0.113.31"},  // the push server: foreign, UA "Bria Push Service"
}

// rewriteAMI moves AMI addresses (IPV4/UDP/127.0.0.11/5070) to TEST-NET. Only
// the "/addr/" form is touched, so 127.0.0.1 stays as it is.
func rewriteAMI(b []byte, extra ...[2]string) []byte {
	for _, r := range rewrite {
		b = bytes.ReplaceAll(b, []byte("/"+r.from+"/"), []byte("/"+r.to+"/"))
	}
	for _, r := range extra {
		b = bytes.ReplaceAll(b, []byte("/"+r[0]+"/"), []byte("/"+r[1]+"/"))
	}
	return b
}

func repoRoot(t *testing.T) string {
	t.Helper()
	return testpath.RepoRoot(t)
}

func asterisk(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testpath.Shared(t, "asterisk", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildBinary builds cmd/sipsentry once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if buildDir, buildErr = os.MkdirTemp("", "sipsentry-e2e-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "sipsentry")
		cmd := exec.Command(goBin, "build", "-o", builtBin, "./cmd/sipsentry")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// eventually polls cond; the limit is a liveness bound, not a speed check.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: %s", what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitKernelSets waits until every address of mustBan is in the kernel's
// v4 ban set and the push server 203.0.113.31 in the allow set.
func waitKernelSets(t *testing.T, ns *netnstest.NS, mustBan []string, when string) {
	t.Helper()
	eventually(t, "the scanners and the injector in the kernel ban set "+when, func() (bool, string) {
		got := setMembers(t, ns, "sipsentry-ban-v4")
		for _, a := range mustBan {
			if !slices.Contains(got, a) {
				return false, fmt.Sprintf("ban set %v lacks %s", got, a)
			}
		}
		return true, ""
	})
	eventually(t, "the push server in the kernel allow set "+when, func() (bool, string) {
		got := setMembers(t, ns, "sipsentry-allow-v4")
		return slices.Contains(got, "203.0.113.31"), fmt.Sprintf("allow set %v", got)
	})
}

// setMembers lists the addresses/prefixes in a kernel ipset inside ns.
func setMembers(t *testing.T, ns *netnstest.NS, name string) []string {
	t.Helper()
	out, err := ns.Exec("ipset", "list", name)
	if err != nil {
		t.Fatalf("ipset list %s: %v", name, err)
	}
	_, members, ok := strings.Cut(out, "Members:\n")
	if !ok {
		t.Fatalf("ipset list %s: no Members section:\n%s", name, out)
	}
	var got []string
	for _, line := range strings.Split(members, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			got = append(got, f[0])
		}
	}
	return got
}

type daemonProc struct {
	cmd  *exec.Cmd
	log  string        // the daemon's stderr
	done chan struct{} // closed when the process has been waited for
	err  error         // its exit, valid after done
}

// wait waits for the process to end and returns its exit.
func (p *daemonProc) wait() error {
	<-p.done
	return p.err
}

// startDaemon starts `sipsentry run` inside ns. It is started from a thread
// that joined the namespace (not via `ip netns exec`, which forks and would
// leave the daemon running when the test kills it).
func startDaemon(t *testing.T, ns *netnstest.NS, bin, cfg string) *daemonProc {
	t.Helper()
	privateControlSocket(t, cfg)
	logf, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if err := ns.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("daemon log (last 8 KiB):\n%s", tail(string(b), 8<<10))
		}
	})
	return p
}

// privateControlSocket gives a config without a [control] table a control
// socket next to it, so that no daemon under test uses the host's
// /run/sipsentry/control.sock (tests of other packages, or another
// checkout's, may run a daemon at the same time).
func privateControlSocket(t *testing.T, cfg string) {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\n[control]")) || bytes.HasPrefix(b, []byte("[control]")) {
		return
	}
	b = fmt.Appendf(b, "\n[control]\nsocket = %q\n", filepath.Join(filepath.Dir(cfg), "control.sock"))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestEndToEnd(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables")
	bin := buildBinary(t)
	ns := netnstest.NewNS(t, "e2e")
	dir := t.TempDir()

	// The fake Asterisk listens inside the namespace, where the daemon runs.
	contacts := []ami.Contact{
		{ObjectName: "1001;@0b7e9c2f", Endpoint: "1001", URI: "sip:1001@198.51.100.21:5061;transport=UDP;pn-provider=apns;pn-prid=abc;pn-param=xyz",
			UserAgent: "Bria iOS release 6.5.4 stamp 12345", ViaAddr: "198.51.100.21", ViaPort: "5061", CallID: "phone-1", Status: "Reachable",
			ExpirationTime: time.Now().Add(300 * time.Second)},
		{ObjectName: "1001;@5d1e04aa", Endpoint: "1001", URI: "sip:1001@203.0.113.31:5062;transport=UDP;pn-provider=apns;pn-prid=abc;pn-param=xyz",
			UserAgent: "Bria Push Service", ViaAddr: "203.0.113.31", ViaPort: "5062", CallID: "push-1", Status: "Reachable",
			ExpirationTime: time.Now().Add(120 * time.Second)},
		{ObjectName: "1002;@77aa3310", Endpoint: "1002", URI: "sip:1002@203.0.113.22:5063;transport=TCP",
			UserAgent: "Zoiper rv2.10.20.6", ViaAddr: "203.0.113.22", ViaPort: "5063", CallID: "desk-1", Status: "NonQualified",
			ExpirationTime: time.Now().Add(300 * time.Second)},
	}
	var srv *amitest.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0", Contacts: contacts})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	// The fake ARI, also inside the namespace: live calls from the scanner
	// and the injector (toll fraud in progress) and one from the user's phone.
	var ariLn net.Listener
	if err := ns.Do(func() error {
		var err error
		ariLn, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ari := aritest.Start(aritest.Options{Listener: ariLn, Channels: []aritest.Channel{
		{ID: "1764076000.1", Name: "PJSIP/1001-00000001", RemoteAddr: "198.51.100.21:5061"},
		{ID: "1764076000.2", Name: "PJSIP/anonymous-00000002", RemoteAddr: "203.0.113.11:5070"},
		{ID: "1764076000.3", Name: "PJSIP/1001-00000003", RemoteAddr: "203.0.113.13:5099"},
		{ID: "1764076000.4", Name: "Local/900@default-00000001;1"},
	}})
	t.Cleanup(ari.Close)

	lists := filepath.Join(dir, "lists")
	// Both families of the allowed country: a missing jp-ipv6 is a list
	// problem that /healthz reports (issue 10).
	geotest.WriteLists(t, lists, map[string][]string{
		"JP": {"198.51.100.0/24", "2001:db8:8000::/33"},
		"CN": {"203.0.113.0/24", "2001:db8::/33"},
	})
	mmdb := filepath.Join(dir, "country.mmdb")
	geotest.WriteMMDB(t, mmdb, map[string]string{
		"198.51.100.0/24": "JP", "203.0.113.0/24": "CN", "2001:db8::/32": "CN",
	}, false)
	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[log]
level = "debug"
format = "json"
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
auth = "md5"
ping_interval = "1s"
timeout = "2s"
reconnect_max = "1s"
[geo]
allow_countries = ["JP"]
lists_dir = %q
mmdb = %q
min_entries = 0
[firewall]
mode = "enforce"
backend = "iptables"
[engine]
geo_mode = "drop"
[push]
hosts = []
# Nothing listens there: PTR look-ups fail at once and never leave the namespace.
resolver = "127.0.0.1:1"
[ari]
url = %q
username = "ari"
password = "ari-secret"
application = "sentry"
[metrics]
listen = "127.0.0.1:9468"
[control]
socket = %q
`, stateDir, srv.Addr(), lists, mmdb, ari.URL(), filepath.Join(dir, "control.sock")))

	d := startDaemon(t, ns, bin, cfg)
	if !srv.WaitLogins(1) {
		t.Fatal("the daemon never logged in to the fake AMI server")
	}
	if _, ok := srv.WaitRequest("PJSIPShowContacts"); !ok {
		t.Fatal("no resync (PJSIPShowContacts) after login")
	}
	// ARI: the recorded contact/peer events reach the daemon's live view.
	eventually(t, "the ARI event websocket", func() (bool, string) {
		return ari.Connections() >= 1, "no websocket connection"
	})
	ariLines := bytes.Split(bytes.TrimSpace(asterisk(t, "ari-events.jsonl")), []byte("\n"))
	ari.Send(ariLines[:9]...) // up to here: three contacts registered, both peers Reachable

	// The recorded scenarios, in order, then the s9 injection session
	// without its own banner and login (the first 557 bytes).
	for _, f := range []string{
		"ami-s1-scanner-register.raw", "ami-s2-wrong-password.raw", "ami-s3-register-ok-push.raw",
		"ami-s4-invite-noauth.raw", "ami-s5-options-probe.raw", "ami-s6-ami-logins.raw",
		"ami-s7-acl.raw", "ami-s8-ipv6-tcp-netns.raw",
	} {
		srv.Send(rewriteAMI(asterisk(t, f)))
	}
	s9 := asterisk(t, "ami-s9-injection.raw")
	if !bytes.HasPrefix(s9, []byte("Asterisk Call Manager/")) {
		t.Fatal("ami-s9-injection.raw does not start with the banner")
	}
	srv.Send(rewriteAMI(s9[557:]))

	mustBan := []string{"203.0.113.11", "203.0.113.13", "203.0.113.66"}
	waitKernelSets(t, ns, mustBan, "after the replay")
	checkNeverBanned(t, ns)
	// Banning hung up the banned sources' live calls, and only theirs.
	eventually(t, "the banned sources' calls hung up over ARI", func() (bool, string) {
		h := ari.HungUp()
		return slices.Contains(h, "1764076000.2") && slices.Contains(h, "1764076000.3"), fmt.Sprintf("hung up %v", h)
	})
	if h := ari.HungUp(); slices.Contains(h, "1764076000.1") || slices.Contains(h, "1764076000.4") {
		t.Errorf("hung up %v: the phone's or the Local channel was among them", h)
	}

	// The state DB (WAL; the daemon writes in batches) holds the evidence.
	dbPath := filepath.Join(stateDir, "sipsentry.db")
	eventually(t, "learned push server and flagged foreign login in the state DB", func() (bool, string) {
		st, err := state.OpenReadOnly(dbPath)
		if err != nil {
			return false, err.Error()
		}
		defer st.Close()
		ctx := context.Background()
		allows, err := st.LearnedAllows(ctx)
		if err != nil {
			return false, err.Error()
		}
		var push *state.Allow
		for i := range allows {
			if allows[i].Prefix == netip.MustParsePrefix("203.0.113.31/32") {
				push = &allows[i]
			}
		}
		if push == nil {
			return false, fmt.Sprintf("learned allows %+v lack 203.0.113.31", allows)
		}
		if push.UserAgent != "Bria Push Service" || push.Account != "1001" || push.AOR != "1001" ||
			!strings.Contains(push.URI, "203.0.113.31") || push.FirstSeen.IsZero() || push.LastSeen.IsZero() {
			return false, fmt.Sprintf("push evidence incomplete: %+v", *push)
		}
		flags, err := st.Flags(ctx)
		if err != nil {
			return false, err.Error()
		}
		flagged := false
		for _, f := range flags {
			if f.Addr == netip.MustParseAddr("203.0.113.22") && f.Kind == "foreign_login" {
				flagged = true
			}
			if f.Addr == netip.MustParseAddr("203.0.113.31") || f.Addr == netip.MustParseAddr("198.51.100.21") {
				return false, fmt.Sprintf("flagged %s, which must not be: %+v", f.Addr, f)
			}
		}
		if !flagged {
			return false, fmt.Sprintf("flags %+v lack the foreign login from 203.0.113.22", flags)
		}
		bans, err := st.ActiveBans(ctx)
		if err != nil {
			return false, err.Error()
		}
		var banned []string
		for _, b := range bans {
			banned = append(banned, b.Addr.String())
		}
		for _, a := range mustBan {
			if !slices.Contains(banned, a) {
				return false, fmt.Sprintf("DB bans %v lack %s", banned, a)
			}
		}
		srcs, err := st.Sources(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range srcs {
			if s.Addr == netip.MustParseAddr("198.51.100.21") && s.Status == state.StatusBanned {
				return false, "the phone is banned in the DB"
			}
		}
		return true, ""
	})

	// /healthz and `sipsentry status` from inside the namespace.
	if code, body := nsGet(t, ns, "http://127.0.0.1:9468/healthz"); code != 200 {
		t.Errorf("/healthz = %d %q", code, body)
	}
	_, metricsText := nsGet(t, ns, "http://127.0.0.1:9468/metrics")
	for _, want := range []string{"sipsentry_ami_connected 1", `sipsentry_decisions_total{kind="ban"}`,
		"sipsentry_event_to_kernel_seconds_count", `sipsentry_ami_events_total{type="InvalidAccountID"}`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	out, err := ns.Exec(bin, "status", "--json", "--config", cfg)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st struct {
		Running bool `json:"running"`
		AMI     struct {
			Connected bool `json:"connected"`
		} `json:"ami"`
		Firewall struct {
			Up bool `json:"up"`
		} `json:"firewall"`
		Engine struct {
			ActiveBans int `json:"active_bans"`
		} `json:"engine"`
		ARI struct {
			Connected bool `json:"connected"`
			Contacts  []struct {
				URI    string `json:"URI"`
				Status string `json:"Status"`
			} `json:"contacts"`
			Peers []struct {
				Endpoint string `json:"Endpoint"`
				Status   string `json:"Status"`
			} `json:"peers"`
		} `json:"ari"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if !st.Running || !st.AMI.Connected || !st.Firewall.Up || st.Engine.ActiveBans < len(mustBan) {
		t.Errorf("status = %+v", st)
	}
	if !st.ARI.Connected || len(st.ARI.Contacts) != 3 || len(st.ARI.Peers) != 2 {
		t.Errorf("status ARI view = %+v, want 3 live contacts and 2 peers from the recorded events", st.ARI)
	}

	// A second daemon on the same config stops at the metrics listener,
	// before it touches the kernel or the state DB.
	if out, err := ns.Exec(bin, "run", "--config", cfg); err == nil || !strings.Contains(out, "another sipsentry") {
		t.Errorf("a second `run` on the same config: err %v, output:\n%s", err, tail(out, 2000))
	}

	// SIGHUP reloads the configuration and the lists.
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "a successful reload after SIGHUP", func() (bool, string) {
		_, m := nsGet(t, ns, "http://127.0.0.1:9468/metrics")
		return strings.Contains(m, `sipsentry_reloads_total{result="ok"} 1`), "no sipsentry_reloads_total{result=\"ok\"} 1"
	})

	// kill -9, empty the kernel's ban sets, restart: the bans come back from the DB.
	d.cmd.Process.Kill()
	d.wait()
	ns.MustExec("ipset", "flush", "sipsentry-ban-v4")
	ns.MustExec("ipset", "flush", "sipsentry-ban-v6")
	if got := setMembers(t, ns, "sipsentry-ban-v4"); len(got) != 0 {
		t.Fatalf("ban set not empty after flush: %v", got)
	}
	logins := srv.Logins()
	d = startDaemon(t, ns, bin, cfg)
	if !srv.WaitLogins(logins + 1) {
		t.Fatal("the restarted daemon never logged in")
	}
	waitKernelSets(t, ns, mustBan, "restored after kill -9 and restart")

	// Asterisk restarts: the daemon reconnects, resyncs, and keeps banning.
	logins = srv.Logins()
	resyncs := countActions(srv, "PJSIPShowContacts")
	srv.Restart()
	if !srv.WaitLogins(logins + 1) {
		t.Fatal("the daemon did not reconnect after the AMI server restart")
	}
	eventually(t, "resync after reconnect", func() (bool, string) {
		n := countActions(srv, "PJSIPShowContacts")
		return n > resyncs, fmt.Sprintf("%d PJSIPShowContacts, %d before the restart", n, resyncs)
	})
	srv.Send(rewriteAMI(asterisk(t, "ami-s1-scanner-register.raw"), [2]string{"203.0.113.11", "203.0.113.99"}))
	eventually(t, "a new scanner banned after the reconnect", func() (bool, string) {
		got := setMembers(t, ns, "sipsentry-ban-v4")
		return slices.Contains(got, "203.0.113.99"), fmt.Sprintf("ban set %v", got)
	})
	checkNeverBanned(t, ns)

	// SIGTERM: a clean exit that leaves the firewall up.
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if err := d.err; err != nil {
			t.Errorf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30 s of SIGTERM")
	}
	if _, err := ns.Exec("iptables", "-S", "SIPSENTRY"); err != nil {
		t.Errorf("the SIPSENTRY chain is gone after a plain SIGTERM: %v", err)
	}
	if got := setMembers(t, ns, "sipsentry-ban-v4"); !slices.Contains(got, "203.0.113.11") {
		t.Errorf("bans gone after SIGTERM: %v", got)
	}
}

// checkNeverBanned: neither the phone, the push server, loopback nor the
// s9 payload address 6.6.6.6 may ever be in a ban set.
func checkNeverBanned(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	v4 := setMembers(t, ns, "sipsentry-ban-v4")
	for _, a := range []string{"6.6.6.6", "198.51.100.21", "203.0.113.31", "127.0.0.1"} {
		if slices.Contains(v4, a) {
			t.Errorf("%s is in the ban set %v", a, v4)
		}
	}
	for _, m := range v4 {
		if strings.HasPrefix(m, "6.6.6.") || strings.HasPrefix(m, "127.") {
			t.Errorf("ban set holds %s", m)
		}
	}
}

func countActions(srv *amitest.Server, action string) int {
	n := 0
	for _, r := range srv.Requests() {
		if strings.EqualFold(r.Get("Action"), action) {
			n++
		}
	}
	return n
}

// nsGet does an HTTP GET from inside the namespace.
func nsGet(t *testing.T, ns *netnstest.NS, url string) (int, string) {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s in %s: %v", url, ns.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A config that would lock the admin out (enforce + drop + no country + no
// allow CIDR) refuses to start with exit status 2, before touching anything.
func TestLockoutConfigRefusesToStart(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lockout.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[ami]
secret = "x"
[firewall]
mode = "enforce"
backend = "dry-run"
[engine]
geo_mode = "drop"
`, filepath.Join(dir, "state")))
	cmd := exec.Command(bin, "run", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("run with a lock-out config: %v (want exit status 2)\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "lock") {
		t.Errorf("the error does not say why: %q", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("state_dir was created by a run that refused to start")
	}
}

// enforce + drop with allowed countries whose lists are not loaded (an empty
// lists_dir here; no network on a first start in production) would drop
// every phone: run refuses with exit status 1 and says what to do.
func TestDropWithoutAllowedListsRefusesToStart(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	geotest.WriteLists(t, lists, map[string][]string{"CN": {"203.0.113.0/24"}}) // no JP list
	cfg := filepath.Join(dir, "nolists.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[ami]
secret = "x"
address = "127.0.0.1:1"
[geo]
allow_countries = ["JP"]
lists_dir = %q
min_entries = 0
[firewall]
mode = "enforce"
backend = "dry-run"
[engine]
geo_mode = "drop"
[push]
hosts = []
[metrics]
listen = ""
[control]
socket = %q
`, filepath.Join(dir, "state"), lists, filepath.Join(dir, "control.sock")))
	cmd := exec.Command(bin, "run", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("run without the allowed lists: %v (want exit status 1)\n%s", err, tail(stderr.String(), 2000))
	}
	if !strings.Contains(stderr.String(), "lists update") {
		t.Errorf("the error does not say what to do: %s", tail(stderr.String(), 2000))
	}
}

// --replay with the dry-run backend prints the decisions it would make.
func TestReplayDryRunPrintsDecisions(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	geotest.WriteLists(t, lists, map[string][]string{"JP": {"198.51.100.0/24"}})
	capture := filepath.Join(dir, "capture.raw")
	// The whole recorded session plus s9 (banner and login stripped), moved into TEST-NET.
	raw := rewriteAMI(asterisk(t, "ami-security-session.raw"))
	raw = append(raw, rewriteAMI(asterisk(t, "ami-s9-injection.raw")[557:])...)
	if err := os.WriteFile(capture, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "replay.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[geo]
allow_countries = ["JP"]
lists_dir = %q
min_entries = 0
[firewall]
mode = "enforce"
backend = "dry-run"
[engine]
geo_mode = "drop"
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = ""
`, filepath.Join(dir, "state"), lists))
	cmd := exec.Command(bin, "run", "--config", cfg, "--replay", capture)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run --replay: %v\n%s", err, tail(stderr.String(), 4096))
	}
	out := stdout.String()
	for _, want := range []string{
		"decision: ban 203.0.113.11 ",
		"decision: ban 203.0.113.13 ",
		"dry-run: add ban 203.0.113.11",
		"replay: ",
		"flag 203.0.113.22 foreign_login",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q", want)
		}
	}
	for _, never := range []string{"ban 6.6.6.6", "add ban 198.51.100.21", "decision: ban 198.51.100.21"} {
		if strings.Contains(out, never) {
			t.Errorf("replay output contains %q", never)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s", tail(out, 6000))
	}

	// No daemon serves a status page here: status says so, shows what the
	// state DB holds, and exits 1.
	cmd = exec.Command(bin, "status", "--config", cfg)
	stdout.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("status without a daemon: %v (want exit status 1)", err)
	}
	if !strings.Contains(stdout.String(), "not running") || !strings.Contains(stdout.String(), "ban") ||
		!strings.Contains(stdout.String(), "203.0.113.11") {
		t.Errorf("status without a daemon printed:\n%s", stdout.String())
	}
}
