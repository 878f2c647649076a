package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/state"
)

// The control socket end to end: `sipsentry ban/unban/allow/bans/allows` as
// an operator types them, against the real daemon, the real kernel (inside a
// namespace) and the real state DB, with and without a running daemon.

// ctlSetup is one namespace with a fake Asterisk and a daemon config whose
// files other uids can read (to run the CLI as uid 65534).
type ctlSetup struct {
	ns      *netnstest.NS
	bin     string // a copy of the binary that any uid may run
	dir     string // 0755
	cfg     string
	sock    string
	stateDB string
	srv     *amitest.Server
}

// ownAddr is an address of the namespace itself (on lo): the host's own.
const ownAddr = "203.0.113.200"

// newCtlSetup: controlExtra goes at the end of the config (keys of
// [control], then any further tables); contacts are what the fake
// Asterisk answers to PJSIPShowContacts.
func newCtlSetup(t *testing.T, label, controlExtra string, contacts ...ami.Contact) *ctlSetup {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables")
	built := buildBinary(t)
	ns := netnstest.NewNS(t, label)
	ns.MustExec("ip", "addr", "add", ownAddr+"/32", "dev", "lo")

	dir, err := os.MkdirTemp("", "sipsentry-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sipsentry")
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
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
	secret := filepath.Join(dir, "ami.secret")
	writeConfig(t, secret, "sentry-secret\n")
	s := &ctlSetup{ns: ns, bin: bin, dir: dir, cfg: filepath.Join(dir, "sipsentry.toml"),
		sock: filepath.Join(dir, "run", "control.sock"), stateDB: filepath.Join(dir, "state", "sipsentry.db"), srv: srv}
	// No secret inline, so the config may be world-readable (the CLI of a
	// control.group member reads it for control.socket).
	text := fmt.Sprintf(`state_dir = %q
[log]
level = "debug"
format = "json"
[ami]
address = %q
username = "sentry"
secret_file = %q
ping_interval = "1s"
timeout = "2s"
reconnect_max = "1s"
[firewall]
mode = "enforce"
backend = "iptables"
allow = ["198.51.100.0/24"]
[engine]
max_failures = 3
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = "127.0.0.1:9468"
[control]
socket = %q
%s`, filepath.Join(dir, "state"), srv.Addr(), secret, s.sock, controlExtra)
	if err := os.WriteFile(s.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// start starts the daemon and waits for its login and its control socket.
func (s *ctlSetup) start(t *testing.T) *daemonProc {
	t.Helper()
	logins := s.srv.Logins()
	d := startDaemon(t, s.ns, s.bin, s.cfg)
	if !s.srv.WaitLogins(logins + 1) {
		t.Fatal("the daemon never logged in to the fake AMI server")
	}
	eventually(t, "the control socket", func() (bool, string) {
		st, err := os.Stat(s.sock)
		if err != nil {
			return false, err.Error()
		}
		return st.Mode().Type() == fs.ModeSocket, st.Mode().String()
	})
	return d
}

// cli runs the CLI inside the namespace as root (cred nil) or as cred, and
// returns its combined output and exit status.
func (s *ctlSetup) cli(t *testing.T, cred *syscall.Credential, args ...string) (string, int) {
	t.Helper()
	stdout, stderr, code := s.cli3(t, cred, args...)
	return stdout + stderr, code
}

// cli3 is cli with stdout and stderr apart.
func (s *ctlSetup) cli3(t *testing.T, cred *syscall.Credential, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(s.bin, append(args, "--config", s.cfg)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := s.ns.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sipsentry %s did not finish within 60 s:\n%s%s", strings.Join(args, " "), out.String(), errb.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("sipsentry %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), 0
}

// mustJSON runs the CLI as root and returns its stdout (logs go to
// stderr), failing the test unless it exits 0.
func (s *ctlSetup) mustJSON(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := s.cli3(t, nil, args...)
	if code != 0 {
		t.Fatalf("sipsentry %s: exit %d:\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// mustCLI runs the CLI as root and fails the test unless it exits 0.
func (s *ctlSetup) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, code := s.cli(t, nil, args...)
	if code != 0 {
		t.Fatalf("sipsentry %s: exit %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

type banRow struct {
	Addr    string  `json:"addr"`
	Origin  string  `json:"origin"`
	Reason  string  `json:"reason"`
	Offence int     `json:"offence"`
	UID     *uint32 `json:"uid"`
	Monitor bool    `json:"monitor"`
	Left    float64 `json:"time_left_seconds"`
}

func (s *ctlSetup) bans(t *testing.T) map[string]banRow {
	t.Helper()
	out := s.mustJSON(t, "bans", "--json")
	var rows []banRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("bans --json: %v\n%s", err, out)
	}
	m := map[string]banRow{}
	for _, r := range rows {
		m[r.Addr] = r
	}
	return m
}

// dbBanned reports whether the state DB holds an active ban of addr.
func (s *ctlSetup) dbBanned(t *testing.T, addr string) (bool, string) {
	t.Helper()
	st, err := state.OpenReadOnly(s.stateDB)
	if err != nil {
		return false, err.Error()
	}
	defer st.Close()
	bans, err := st.ActiveBans(context.Background())
	if err != nil {
		return false, err.Error()
	}
	var got []string
	for _, b := range bans {
		if b.Addr == netip.MustParseAddr(addr) {
			return true, ""
		}
		got = append(got, b.Addr.String())
	}
	return false, fmt.Sprintf("DB bans %v", got)
}

func (s *ctlSetup) inKernel(t *testing.T, addr string) bool {
	t.Helper()
	return slices.Contains(setMembers(t, s.ns, "sipsentry-ban-v4"), addr)
}

// checkRefusals: loopback, the host's own address and an allow-listed one
// are refused with the reason, exit 1, and reach neither kernel nor DB.
func (s *ctlSetup) checkRefusals(t *testing.T, when string) {
	t.Helper()
	for _, tc := range []struct{ addr, why string }{
		{"127.0.0.1", "loopback"},
		{ownAddr, "own address"},
		{"198.51.100.7", "198.51.100.0/24"},
	} {
		out, code := s.cli(t, nil, "ban", tc.addr)
		if code != 1 || !strings.Contains(out, "refused") || !strings.Contains(out, tc.why) {
			t.Errorf("%s: ban %s: exit %d, output %q; want exit 1, refused, naming %q", when, tc.addr, code, out, tc.why)
		}
		if s.inKernel(t, tc.addr) {
			t.Errorf("%s: %s is in the kernel ban set", when, tc.addr)
		}
		if banned, _ := s.dbBanned(t, tc.addr); banned {
			t.Errorf("%s: %s is banned in the state DB", when, tc.addr)
		}
	}
}

// A manual ban through the socket is in the kernel, the DB, `bans` and
// `sources`, and survives kill -9 + restart; an unbanned engine ban is not
// back after a restart; refusals say why; unban of what is not banned exits 1.
func TestControlBanWhileDaemonRuns(t *testing.T) {
	s := newCtlSetup(t, "ctlon", "")
	d := s.start(t)

	out := s.mustCLI(t, "ban", "203.0.113.50", "--for", "2h", "--reason", "seen in the CDRs")
	if !strings.Contains(out, "banned 203.0.113.50 until ") || strings.Contains(out, "no daemon") {
		t.Errorf("ban output %q", out)
	}
	// The kernel holds it when the command returns: the daemon answers after the add.
	if !s.inKernel(t, "203.0.113.50") {
		t.Errorf("203.0.113.50 not in the kernel ban set after `ban` returned: %v", setMembers(t, s.ns, "sipsentry-ban-v4"))
	}
	b, ok := s.bans(t)["203.0.113.50"]
	if !ok || b.Origin != "manual" || b.UID == nil || *b.UID != 0 || !strings.Contains(b.Reason, "seen in the CDRs") || b.Left < 7000 || b.Monitor {
		t.Errorf("bans --json row for 203.0.113.50: %+v (present %v)", b, ok)
	}
	eventually(t, "the manual ban in the state DB", func() (bool, string) { return s.dbBanned(t, "203.0.113.50") })
	// status and the metrics count it like the engine's own.
	if _, m := nsGet(t, s.ns, "http://127.0.0.1:9468/metrics"); !strings.Contains(m, `sipsentry_decisions_total{kind="ban"} 1`) {
		t.Errorf("/metrics does not count the manual ban as a ban decision")
	}
	var st struct {
		Engine struct {
			ActiveBans int `json:"active_bans"`
		} `json:"engine"`
	}
	if out := s.mustJSON(t, "status", "--json"); json.Unmarshal([]byte(out), &st) != nil || st.Engine.ActiveBans != 1 {
		t.Errorf("status --json: active bans %d, want the manual ban:\n%s", st.Engine.ActiveBans, out)
	}
	var srcs []struct {
		IP     string `json:"ip"`
		Status string `json:"status"`
	}
	out = s.mustJSON(t, "sources", "--json")
	if err := json.Unmarshal([]byte(out), &srcs); err != nil {
		t.Fatalf("sources --json: %v\n%s", err, out)
	}
	if !slices.ContainsFunc(srcs, func(r struct {
		IP     string `json:"ip"`
		Status string `json:"status"`
	}) bool {
		return r.IP == "203.0.113.50" && r.Status == state.StatusBanned
	}) {
		t.Errorf("sources --json lacks 203.0.113.50 as banned:\n%s", out)
	}

	s.checkRefusals(t, "with the daemon")

	// An engine ban: a scanner's failures.
	s.srv.Send(rewriteAMI(asterisk(t, "ami-s1-scanner-register.raw")))
	eventually(t, "the scanner banned by the engine", func() (bool, string) {
		return s.inKernel(t, "203.0.113.11"), fmt.Sprint(setMembers(t, s.ns, "sipsentry-ban-v4"))
	})
	if b := s.bans(t)["203.0.113.11"]; b.Origin != "engine" {
		t.Errorf("the scanner's ban: %+v, want origin engine", b)
	}
	out = s.mustCLI(t, "unban", "203.0.113.11")
	if !strings.Contains(out, "unbanned 203.0.113.11") {
		t.Errorf("unban output %q", out)
	}
	if s.inKernel(t, "203.0.113.11") {
		t.Error("203.0.113.11 still in the kernel after unban")
	}
	if _, ok := s.bans(t)["203.0.113.11"]; ok {
		t.Error("203.0.113.11 still in `bans` after unban")
	}
	eventually(t, "the unban in the state DB", func() (bool, string) {
		banned, detail := s.dbBanned(t, "203.0.113.11")
		return !banned, detail
	})
	out, code := s.cli(t, nil, "unban", "203.0.113.11")
	if code != 1 || !strings.Contains(out, "not banned") {
		t.Errorf("second unban: exit %d, %q; want exit 1 saying it is not banned", code, out)
	}

	// kill -9, empty the kernel's ban set, restart: the manual ban is back
	// from the DB, the unbanned scanner is not.
	d.cmd.Process.Kill()
	d.wait()
	s.ns.MustExec("ipset", "flush", "sipsentry-ban-v4")
	s.start(t)
	eventually(t, "the manual ban restored after kill -9", func() (bool, string) {
		return s.inKernel(t, "203.0.113.50"), fmt.Sprint(setMembers(t, s.ns, "sipsentry-ban-v4"))
	})
	if s.inKernel(t, "203.0.113.11") {
		t.Error("the unbanned scanner is back in the kernel after the restart")
	}
	bans := s.bans(t)
	if b := bans["203.0.113.50"]; b.Origin != "manual" || !strings.Contains(b.Reason, "seen in the CDRs") {
		t.Errorf("after restart, bans row %+v", b)
	}
	if _, ok := bans["203.0.113.11"]; ok {
		t.Error("the unbanned scanner is back in `bans` after the restart")
	}
}

// Without a daemon the CLI applies the same rules to the DB and the kernel,
// and the next start agrees.
func TestControlWithoutDaemon(t *testing.T) {
	s := newCtlSetup(t, "ctloff", "")
	// A listing reads the state DB; it needs no kernel (the sets do not exist yet).
	if out := s.mustCLI(t, "bans"); !strings.Contains(out, "no active bans") {
		t.Errorf("bans before anything: %q", out)
	}
	s.mustCLI(t, "firewall", "up")

	out := s.mustCLI(t, "ban", "203.0.113.60", "--for", "3h", "--reason", "offline")
	if !strings.Contains(out, "banned 203.0.113.60") || !strings.Contains(out, "no daemon is running") {
		t.Errorf("offline ban output %q", out)
	}
	if !s.inKernel(t, "203.0.113.60") {
		t.Error("offline ban not in the kernel")
	}
	if banned, detail := s.dbBanned(t, "203.0.113.60"); !banned {
		t.Errorf("offline ban not in the state DB: %s", detail)
	}
	if b, ok := s.bans(t)["203.0.113.60"]; !ok || b.Origin != "manual" {
		t.Errorf("offline bans row %+v (present %v)", b, ok)
	}
	s.checkRefusals(t, "without a daemon")
	out, code := s.cli(t, nil, "unban", "203.0.113.61")
	if code != 1 || !strings.Contains(out, "not banned") {
		t.Errorf("offline unban of an address not banned: exit %d, %q", code, out)
	}
	s.mustCLI(t, "ban", "203.0.113.62", "--for", "3h")
	s.mustCLI(t, "unban", "203.0.113.62")
	if s.inKernel(t, "203.0.113.62") {
		t.Error("offline unban left the address in the kernel")
	}

	// The next start agrees: restored from the DB into an emptied set.
	s.ns.MustExec("ipset", "flush", "sipsentry-ban-v4")
	s.start(t)
	eventually(t, "the offline ban restored by the daemon", func() (bool, string) {
		return s.inKernel(t, "203.0.113.60"), fmt.Sprint(setMembers(t, s.ns, "sipsentry-ban-v4"))
	})
	bans := s.bans(t)
	if b, ok := bans["203.0.113.60"]; !ok || b.Origin != "manual" || !strings.Contains(b.Reason, "offline") {
		t.Errorf("the daemon's bans row for the offline ban: %+v (present %v)", b, ok)
	}
	if _, ok := bans["203.0.113.62"]; ok || s.inKernel(t, "203.0.113.62") {
		t.Error("the offline unban is undone by the daemon's start")
	}
}

// The socket lets in root and members of control.group, and nobody else:
// the file's mode refuses the rest, and behind a mode opened by mistake the
// daemon refuses them itself from the kernel's credentials, and logs it.
func TestControlSocketPeers(t *testing.T) {
	const group = 64125
	s := newCtlSetup(t, "ctlpeer", fmt.Sprintf("group = \"%d\"\n", group))
	d := s.start(t)
	st, err := os.Stat(s.sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 || st.Sys().(*syscall.Stat_t).Gid != group || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("socket %v uid %d gid %d; want 0660 root:%d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid, st.Sys().(*syscall.Stat_t).Gid, group)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534}}
	member := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{group}}

	out, code := s.cli(t, nobody, "ban", "203.0.113.70")
	if code != 1 || !strings.Contains(out, "permission denied") {
		t.Errorf("ban as uid 65534 outside the group: exit %d, %q; want exit 1, permission denied", code, out)
	}
	out, code = s.cli(t, member, "ban", "203.0.113.71", "--for", "1h")
	if code != 0 || !strings.Contains(out, "banned 203.0.113.71") {
		t.Errorf("ban as a member of control.group: exit %d, %q", code, out)
	}
	if b := s.bans(t)["203.0.113.71"]; b.UID == nil || *b.UID != 65534 {
		t.Errorf("the member's ban %+v: want uid 65534 from the kernel", b)
	}
	if out, code := s.cli(t, member, "bans"); code != 0 || !strings.Contains(out, "203.0.113.71") {
		t.Errorf("bans as a member: exit %d, %q", code, out)
	}

	// The socket opened to everyone by mistake: the daemon still refuses.
	if err := os.Chmod(s.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	out, code = s.cli(t, nobody, "ban", "203.0.113.72")
	if code != 1 || !strings.Contains(out, "uid 65534 may not use the control socket") {
		t.Errorf("ban as uid 65534 through a 0666 socket: exit %d, %q", code, out)
	}
	if s.inKernel(t, "203.0.113.70") || s.inKernel(t, "203.0.113.72") {
		t.Error("a refused peer's ban reached the kernel")
	}
	eventually(t, "the refusal in the daemon's log", func() (bool, string) {
		b, _ := os.ReadFile(d.log)
		return bytes.Contains(b, []byte("control: refused a peer")) && bytes.Contains(b, []byte(`"uid":65534`)), "not logged"
	})
}

// Without control.group the socket is root's alone.
func TestControlSocketRootOnly(t *testing.T) {
	s := newCtlSetup(t, "ctlroot", "")
	s.start(t)
	st, err := os.Stat(s.sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("socket %v uid %d; want 0600 root", st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
	if pst, err := os.Stat(filepath.Dir(s.sock)); err != nil || pst.Mode().Perm() != 0o755 {
		t.Errorf("socket directory: %v, %v; want 0755", pst.Mode(), err)
	}
	out, code := s.cli(t, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{0}}, "bans")
	if code != 1 || !strings.Contains(out, "permission denied") {
		t.Errorf("bans as uid 65534 (even with group 0): exit %d, %q", code, out)
	}
}

// `allows` lists the static entry, a push server learned from its login
// with its evidence, and a manual entry with its comment and uid, through
// the daemon; and after a restart, from the daemon again.
func TestControlAllowsListing(t *testing.T) {
	push := ami.Contact{ObjectName: "1001;@5d1e04aa", Endpoint: "1001",
		URI:       "sip:1001@203.0.113.31:5062;transport=UDP;pn-provider=apns;pn-prid=abc;pn-param=xyz",
		UserAgent: "Bria Push Service", ViaAddr: "203.0.113.31", ViaPort: "5062", CallID: "push-1", Status: "Reachable",
		ExpirationTime: time.Now().Add(120 * time.Second)}
	lists, err := os.MkdirTemp("", "sipsentry-ctl-lists-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(lists) })
	geotest.WriteLists(t, lists, map[string][]string{"JP": {"198.51.100.0/24"}, "CN": {"203.0.113.0/24"}})
	s := newCtlSetup(t, "ctlallow", fmt.Sprintf("[geo]\nallow_countries = [\"JP\"]\nlists_dir = %q\nmin_entries = 0\n", lists), push)
	d := s.start(t)
	s.srv.Send(rewriteAMI(asterisk(t, "ami-s3-register-ok-push.raw")))
	eventually(t, "the push server in the kernel allow set", func() (bool, string) {
		got := setMembers(t, s.ns, "sipsentry-allow-v4")
		return slices.Contains(got, "203.0.113.31"), fmt.Sprint(got)
	})
	s.mustCLI(t, "allow", "203.0.113.64/28", "--for", "2h", "--comment", "branch office")

	type allowRow struct {
		Prefix   string  `json:"prefix"`
		Kind     string  `json:"kind"`
		Comment  string  `json:"comment"`
		UID      *uint32 `json:"uid"`
		Left     float64 `json:"time_left_seconds"`
		Evidence *struct {
			How       string `json:"how"`
			Account   string `json:"account"`
			UserAgent string `json:"user_agent"`
			URI       string `json:"uri"`
		} `json:"evidence"`
	}
	check := func(when string) {
		t.Helper()
		out := s.mustJSON(t, "allows", "--json")
		var rows []allowRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%s: allows --json: %v\n%s", when, err, out)
		}
		byPrefix := map[string]allowRow{}
		for _, r := range rows {
			byPrefix[r.Prefix] = r
		}
		if r := byPrefix["198.51.100.0/24"]; r.Kind != "static" {
			t.Errorf("%s: static entry %+v", when, r)
		}
		if r := byPrefix["203.0.113.31/32"]; r.Kind != "learned" || r.Evidence == nil || r.Evidence.UserAgent != "Bria Push Service" ||
			r.Evidence.Account != "1001" || !strings.Contains(r.Evidence.URI, "203.0.113.31") {
			t.Errorf("%s: learned push server %+v (evidence %+v)", when, r, r.Evidence)
		}
		if r := byPrefix["203.0.113.64/28"]; r.Kind != "manual" || r.Comment != "branch office" || r.UID == nil || *r.UID != 0 || r.Left < 7000 {
			t.Errorf("%s: manual entry %+v", when, r)
		}
		if t.Failed() {
			t.Logf("allows --json:\n%s", out)
		}
	}
	eventually(t, "the learned push server in `allows`", func() (bool, string) {
		out := s.mustCLI(t, "allows")
		return strings.Contains(out, "203.0.113.31/32") && strings.Contains(out, "learned"), out
	})
	check("with the daemon")
	if out := s.mustCLI(t, "allows"); !strings.Contains(out, `ua="Bria Push Service"`) || !strings.Contains(out, `"branch office" by uid 0`) {
		t.Errorf("allows table:\n%s", out)
	}
	d.cmd.Process.Kill()
	d.wait()
	check("without a daemon (from the state DB)")
	s.start(t)
	check("after kill -9 and a restart")
}
