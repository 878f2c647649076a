package doctor

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/daemon"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// adminRepoRoot walks up from the package directory to the one holding go.mod.
func adminRepoRoot(t testing.TB) string {
	t.Helper()
	return testpath.RepoRoot(t)
}

// adminTestdata is ../shared/testdata beside the repository.
func adminTestdata(t testing.TB, parts ...string) string {
	t.Helper()
	return testpath.Shared(t, parts...)
}

// fakeRunner answers exec calls from a table keyed by "name arg arg".
type fakeRunner struct {
	mu    sync.Mutex
	out   map[string]string
	fails map[string]bool
	calls []string
}

func (f *fakeRunner) run(_ context.Context, name string, args ...string) (string, error) {
	key := strings.Join(append([]string{name}, args...), " ")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, key)
	if f.fails[key] {
		return f.out[key], errors.New("exit status 1")
	}
	if out, ok := f.out[key]; ok {
		return out, nil
	}
	return "", fmt.Errorf("fakeRunner: unexpected call %q", key)
}

// testDoctorEnv points every outside path at files under t.TempDir().
func testDoctorEnv(t *testing.T, configText string, mode os.FileMode) (Env, *fakeRunner, map[string]bool) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipsentry.toml")
	if configText != "" {
		if err := os.WriteFile(cfg, []byte(configText), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(cfg, mode); err != nil {
			t.Fatal(err)
		}
	}
	sys := filepath.Join(dir, "sys-module")
	if err := os.Mkdir(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &fakeRunner{out: map[string]string{}, fails: map[string]bool{}}
	bins := map[string]bool{}
	env := Env{
		ConfigPath:    cfg,
		ConfigGiven:   true,
		ProcModules:   filepath.Join(dir, "proc-modules"),
		SysModule:     sys,
		ProcStatus:    filepath.Join(dir, "proc-status"),
		KernelConfigs: []string{filepath.Join(dir, "config.gz"), filepath.Join(dir, "config")},
		Run:           r.run,
		LookPath: func(file string) (string, error) {
			if bins[file] {
				return "/usr/sbin/" + file, nil
			}
			return "", exec.ErrNotFound
		},
		Now: func() time.Time { return time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC) },
		FirewallStatus: func(context.Context, config.Firewall) (firewall.Status, error) {
			return firewall.Status{}, errors.New("firewallStatus not faked in this test")
		},
		HTTP:    &http.Client{Timeout: 5 * time.Second},
		AMIWait: 300 * time.Millisecond,
	}
	return env, r, bins
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// wantResult asserts a verdict and that detail and fix say what they must.
func wantResult(t *testing.T, got Result, status Status, detailHas, fixHas string) {
	t.Helper()
	if got.Status != status {
		t.Errorf("%s: status %s, want %s (detail %q)", got.Name, got.Status, status, got.Detail)
	}
	if !strings.Contains(got.Detail, detailHas) {
		t.Errorf("%s: detail %q does not contain %q", got.Name, got.Detail, detailHas)
	}
	bad := status == Warn || status == Fail
	if bad && fixHas != "" && !strings.Contains(got.Fix, fixHas) {
		t.Errorf("%s: fix %q does not contain %q", got.Name, got.Fix, fixHas)
	}
	if (status == Warn || status == Fail) && got.Fix == "" {
		t.Errorf("%s: %s without a fix line", got.Name, status)
	}
}

func TestDoctorConfigFile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		text      string
		mode      os.FileMode
		given     bool
		status    Status
		detailHas string
		fixHas    string
	}{
		{"missing default path", "", 0, false, Warn, "does not exist: the checks below use the built-in defaults", "install -m 600 contrib/sipsentry.toml"},
		{"missing given path", "", 0, true, Fail, "does not exist", "install -m 600 contrib/sipsentry.toml"},
		{"bad value names the line", "[firewall]\nmode = \"drop-all\"\n", 0o600, true, Fail, "sipsentry.toml:2: firewall.mode", "sipsentry config check"},
		{"unknown key", "[ami]\nadress = \"x\"\n", 0o600, true, Fail, "ami.adress: unknown key", "contrib/sipsentry.toml"},
		{"inline secret readable by others", "[ami]\nsecret = \"s3cret\"\n", 0o644, true, Fail, "mode 0644 and holds a secret", "chmod 600"},
		{"inline secret private", "[ami]\nsecret = \"s3cret\"\n", 0o600, true, Pass, "holds a secret, readable by its owner only", ""},
		{"no secret, world readable is fine", "[ami]\nsecret_file = \"/x\"\n", 0o644, true, Pass, "mode 0644, no secret inside", ""},
		// Issue 10: a 0666 file let any local user edit firewall.allow; doctor said PASS.
		{"writable by others", "[ami]\nsecret_file = \"/x\"\n", 0o666, true, Fail, "mode 0666: group or others can change it", "chmod go-w "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, tc.text, tc.mode)
			env.ConfigGiven = tc.given
			got := newDoctor(env).checkConfigFile()
			wantResult(t, got, tc.status, tc.detailHas, tc.fixHas)
			if strings.Contains(got.Detail, "s3cret") || strings.Contains(got.Fix, "s3cret") {
				t.Errorf("the secret leaked into the report: %+v", got)
			}
		})
	}
}

// A config file owned by another local user fails with the chown to run
// (as root the file is handed to nobody; otherwise there is no other user
// this test may create files for, and config's own test covers the rule).
func TestDoctorConfigFileForeignOwner(t *testing.T) {
	netnstest.RequireRoot(t) // to chown a file to another user
	env, _, _ := testDoctorEnv(t, "[ami]\nsecret_file = \"/x\"\n", 0o644)
	if err := os.Chown(env.ConfigPath, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantResult(t, newDoctor(env).checkConfigFile(), Fail, "owned by uid 65534", "chown root "+env.ConfigPath)
}

func TestDoctorSecretFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeFile(t, good, "s3cret\n", 0o600)
	open := filepath.Join(dir, "open")
	writeFile(t, open, "s3cret\n", 0o640)
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "\n", 0o600)
	for _, tc := range []struct {
		name, path string
		status     Status
		detailHas  string
		fixHas     string
	}{
		{"not set", "", Skip, "not set", ""},
		{"missing", filepath.Join(dir, "nope"), Fail, "no such file", "chmod 600 " + filepath.Join(dir, "nope")},
		{"group readable", open, Fail, "mode 0640", "chmod 600 " + open},
		{"empty", empty, Fail, "is empty", "write the secret into " + empty},
		{"good", good, Pass, "mode 0600 and not empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, "", 0)
			got := newDoctor(env).checkSecretFile("ami.secret_file", tc.path)
			wantResult(t, got, tc.status, tc.detailHas, tc.fixHas)
		})
	}
	t.Run("no secret at all", func(t *testing.T) {
		env, _, _ := testDoctorEnv(t, "", 0)
		wantResult(t, newDoctor(env).checkAMISecret(), Fail, "neither secret nor secret_file", "secret_file")
	})
}

func TestDoctorAMITransport(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		verdict   Status
		detailHas string
		fixHas    string
	}{
		{"default loopback", "", Pass, "127.0.0.1:5038 is loopback", ""},
		{"ipv6 loopback", "[ami]\naddress = \"[::1]:5038\"\n", Pass, "is loopback", ""},
		{"localhost", "[ami]\naddress = \"localhost:5038\"\n", Pass, "is loopback", ""},
		{"remote with TLS", "[ami]\naddress = \"198.51.100.7:5039\"\ntls = true\n", Pass, "TLS to 198.51.100.7:5039", ""},
		{"remote md5 clear", "[ami]\naddress = \"198.51.100.7:5038\"\n", Warn, "security events cross the network in clear text", "ami.tls = true"},
		{"remote plain clear", "[ami]\naddress = \"198.51.100.7:5038\"\nauth = \"plain\"\n", Warn, "the secret crosses it in clear text", "auth = \"md5\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, tc.cfg, 0o600)
			if tc.cfg == "" {
				env.ConfigPath = filepath.Join(t.TempDir(), "absent.toml")
			}
			wantResult(t, newDoctor(env).checkAMITransport(), tc.verdict, tc.detailHas, tc.fixHas)
		})
	}
}

func TestDoctorCapNetAdmin(t *testing.T) {
	for _, tc := range []struct {
		name, status, config string
		verdict              Status
		detailHas            string
	}{
		{"root", "Name:\tsipsentry\nCapEff:\t000001ffffffffff\n", "", Pass, "held by this process"},
		{"only net_admin", "CapEff:\t0000000000001000\n", "", Pass, "held by this process"},
		{"unprivileged", "CapEff:\t0000000000000000\n", "", Warn, "this process lacks it"},
		{"only net_raw", "CapEff:\t0000000000002000\n", "", Warn, "this process lacks it"},
		{"no CapEff line", "Name:\tx\n", "", Warn, "no CapEff line"},
		{"dry-run backend", "CapEff:\t0\n", "[firewall]\nbackend = \"dry-run\"\n", Skip, "dry-run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, tc.config, 0o600)
			if tc.config == "" {
				env.ConfigPath = filepath.Join(t.TempDir(), "absent.toml")
			}
			writeFile(t, env.ProcStatus, tc.status, 0o644)
			wantResult(t, newDoctor(env).checkCapNetAdmin(), tc.verdict, tc.detailHas, "")
		})
	}
}

func TestDoctorFirewallTools(t *testing.T) {
	env, r, bins := testDoctorEnv(t, "", 0)
	d := newDoctor(env)
	ctx := context.Background()

	wantResult(t, d.checkIptables(ctx, "iptables"), Fail, "iptables not found in PATH", "apt-get install iptables ipset")
	wantResult(t, d.checkIpset(ctx), Fail, "ipset not found in PATH", "apt-get install iptables ipset")

	bins["iptables"], bins["ip6tables"], bins["ipset"] = true, true, true
	r.out["iptables -V"] = "iptables v1.8.9 (nf_tables)\n"
	r.out["ip6tables -V"] = "ip6tables v1.8.7 (legacy)\n"
	r.out["ipset version"] = "ipset v7.17, protocol version: 7\n"
	wantResult(t, d.checkIptables(ctx, "iptables"), Pass, "nf_tables backend", "")
	wantResult(t, d.checkIptables(ctx, "ip6tables"), Pass, "legacy backend", "")
	wantResult(t, d.checkIpset(ctx), Pass, "ipset v7.17", "")

	r.out["iptables -V"] = "iptables v1.4.21\n"
	wantResult(t, d.checkIptables(ctx, "iptables"), Warn, "backend not named", "iptables 1.8")
	r.out["ipset version"] = "ipset v7.17: Kernel error received: Operation not permitted\n"
	r.fails["ipset version"] = true
	wantResult(t, d.checkIpset(ctx), Fail, "Operation not permitted", "modprobe ip_set")
}

func writeGzip(t *testing.T, path, text string) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, text); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.String(), 0o444)
}

func TestDoctorKernelModules(t *testing.T) {
	const kconfig = "CONFIG_IP_SET=y\nCONFIG_IP_SET_HASH_IP=m\n# CONFIG_IP_SET_HASH_NET is not set\nCONFIG_NETFILTER_XT_SET=m\nCONFIG_NF_CONNTRACK=y\n"
	for _, tc := range []struct {
		name, mod, symbol string
		procModules       string
		sysModule         bool
		gz                bool // kernel config as /proc/config.gz (else /boot/config-*)
		noConfig          bool
		modprobe          bool // modprobe present
		modprobeFails     bool
		verdict           Status
		detailHas, fixHas string
	}{
		{name: "loaded", mod: "xt_set", symbol: "CONFIG_NETFILTER_XT_SET", procModules: "nf_conntrack 172032 3 - Live 0x0\nxt_set 20480 2 - Live 0x0\n", verdict: Pass, detailHas: "loaded"},
		{name: "in /sys/module", mod: "ip_set", symbol: "CONFIG_IP_SET", sysModule: true, verdict: Pass, detailHas: "built in or loaded"},
		{name: "built in per config.gz", mod: "nf_conntrack", symbol: "CONFIG_NF_CONNTRACK", gz: true, verdict: Pass, detailHas: "CONFIG_NF_CONNTRACK=y in"},
		{name: "not built per config", mod: "ip_set_hash_net", symbol: "CONFIG_IP_SET_HASH_NET", verdict: Fail, detailHas: "built without it", fixHas: "CONFIG_IP_SET_HASH_NET"},
		{name: "symbol absent from config", mod: "nf_conntrack_netlink", symbol: "CONFIG_NF_CT_NETLINK", gz: true, verdict: Fail, detailHas: "CONFIG_NF_CT_NETLINK is not set", fixHas: "linux-modules-extra"},
		{name: "module, loadable", mod: "ip_set_hash_ip", symbol: "CONFIG_IP_SET_HASH_IP", modprobe: true, verdict: Pass, detailHas: "loadable"},
		{name: "module, not loadable", mod: "xt_set", symbol: "CONFIG_NETFILTER_XT_SET", modprobe: true, modprobeFails: true, verdict: Fail, detailHas: "not loaded and not loadable", fixHas: "CONFIG_NETFILTER_XT_SET"},
		{name: "no config, no modprobe", mod: "xt_set", symbol: "CONFIG_NETFILTER_XT_SET", noConfig: true, verdict: Warn, detailHas: "no modprobe here", fixHas: "modprobe xt_set"},
		{name: "no config, modprobe finds it", mod: "xt_set", symbol: "CONFIG_NETFILTER_XT_SET", noConfig: true, modprobe: true, verdict: Pass, detailHas: "loadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, r, bins := testDoctorEnv(t, "", 0)
			if tc.procModules != "" {
				writeFile(t, env.ProcModules, tc.procModules, 0o444)
			}
			if tc.sysModule {
				if err := os.Mkdir(filepath.Join(env.SysModule, tc.mod), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.noConfig {
				if tc.gz {
					writeGzip(t, env.KernelConfigs[0], kconfig)
				} else {
					writeFile(t, env.KernelConfigs[1], kconfig, 0o444)
				}
			}
			bins["modprobe"] = tc.modprobe
			key := "modprobe -n -q " + tc.mod
			r.out[key] = ""
			if tc.modprobeFails {
				r.out[key] = "modprobe: FATAL: Module " + tc.mod + " not found in directory /lib/modules/6.1.0\n"
				r.fails[key] = true
			}
			got := newDoctor(env).checkModule(context.Background(), tc.mod, tc.symbol)
			wantResult(t, got, tc.verdict, tc.detailHas, tc.fixHas)
			if tc.modprobeFails && !strings.Contains(got.Detail, "not found in directory") {
				t.Errorf("modprobe's message is not passed on: %q", got.Detail)
			}
			usedModprobe := len(r.calls) > 0
			if wantModprobe := tc.modprobe && (tc.noConfig || tc.name == "module, loadable" || tc.modprobeFails); usedModprobe != wantModprobe {
				t.Errorf("modprobe called = %v, want %v (calls %v)", usedModprobe, wantModprobe, r.calls)
			}
		})
	}
	t.Run("dry-run skips", func(t *testing.T) {
		env, _, _ := testDoctorEnv(t, "[firewall]\nbackend = \"dry-run\"\n", 0o600)
		wantResult(t, newDoctor(env).checkModule(context.Background(), "xt_set", "CONFIG_NETFILTER_XT_SET"), Skip, "dry-run", "")
	})
}

func TestDoctorFirewall(t *testing.T) {
	sets := func(ccV4, banV4, banMax int) []firewall.SetInfo {
		return []firewall.SetInfo{
			{Set: firewall.SetAllow, Family: "inet", Entries: 2, MaxElem: 65536},
			{Set: firewall.SetBan, Family: "inet", Entries: banV4, MaxElem: banMax},
			{Set: firewall.SetAllowCountry, Family: "inet", Entries: ccV4, MaxElem: 65536},
			{Set: firewall.SetBan, Family: "inet6", Entries: 0, MaxElem: banMax},
		}
	}
	const enforceJP = "[geo]\nallow_countries = [\"JP\"]\n[firewall]\nmode = \"enforce\"\n[engine]\ngeo_mode = \"drop\"\n"
	for _, tc := range []struct {
		name, cfg string
		st        firewall.Status
		err       error
		verdict   Status
		detailHas string
		fixHas    string
	}{
		{"dry-run", "[firewall]\nbackend = \"dry-run\"\n", firewall.Status{}, nil, Skip, "dry-run", ""},
		{"kernel unreadable", "", firewall.Status{}, fmt.Errorf("%w: the kernel refused ipset access", firewall.ErrUnavailable), Warn, "the kernel refused ipset access", "CAP_NET_ADMIN"},
		{"not up", "", firewall.Status{Up: false}, nil, Warn, "chain SIPSENTRY and its sets are not (all) in the kernel", "sipsentry firewall up"},
		{"up", "", firewall.Status{Up: true, Rules: make([]firewall.Rule, 7), Sets: sets(0, 12, 1<<20)}, nil, Pass, "up in monitor mode, 7 rules; allow/inet 2, ban/inet 12", ""},
		{"ban set nearly full", "", firewall.Status{Up: true, Sets: sets(0, 950, 1000)}, nil, Warn, "ban/inet holds 950 of 1000", "firewall.ban_maxelem"},
		{"enforced drop, empty country set", enforceJP, firewall.Status{Up: true, Sets: sets(0, 1, 1<<20)}, nil, Fail, "allowed-country set is empty", "sipsentry lists update"},
		{"enforced drop, country set filled", enforceJP, firewall.Status{Up: true, Sets: sets(3162, 1, 1<<20)}, nil, Pass, "up in enforce mode", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, tc.cfg, 0o600)
			if tc.cfg == "" {
				env.ConfigPath = filepath.Join(t.TempDir(), "absent.toml")
			}
			var asked *config.Firewall
			env.FirewallStatus = func(_ context.Context, c config.Firewall) (firewall.Status, error) {
				asked = &c
				return tc.st, tc.err
			}
			wantResult(t, newDoctor(env).checkFirewall(context.Background()), tc.verdict, tc.detailHas, tc.fixHas)
			if tc.verdict != Skip && (asked == nil || asked.Chain != "SIPSENTRY") {
				t.Errorf("the kernel state was not read with the configured firewall table: %+v", asked)
			}
		})
	}
}

func TestDoctorStateDir(t *testing.T) {
	base := t.TempDir()
	notDir := filepath.Join(base, "file")
	writeFile(t, notDir, "x", 0o600)
	for _, tc := range []struct {
		name, dir string
		verdict   Status
		detailHas string
		fixHas    string
	}{
		{"missing", filepath.Join(base, "nope"), Warn, "does not exist yet", "StateDirectory=sipsentry"},
		{"a file", notDir, Fail, "is not a directory", "set state_dir"},
		{"writable", base, Pass, "exists and is writable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n", tc.dir), 0o600)
			wantResult(t, newDoctor(env).checkStateDir(), tc.verdict, tc.detailHas, tc.fixHas)
		})
	}
	entries, _ := os.ReadDir(base)
	if len(entries) != 1 {
		t.Errorf("the writability probe left files behind: %v", entries)
	}
}

func TestDoctorListAges(t *testing.T) {
	// Real JP lists; ages are set through the files' mtimes, which geo uses
	// when a cached list has no metadata and for every lists_dir file.
	now := time.Now()
	copyList := func(t *testing.T, dir, name, src string, age time.Duration) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(adminTestdata(t, "geo", src))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		writeFile(t, p, string(b), 0o644)
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	jp := func(t *testing.T, dir string, age4, age6 time.Duration) {
		copyList(t, dir, "jp-ipv4.txt", "jp-ipv4-aggregated.txt", age4)
		copyList(t, dir, "jp-ipv6.txt", "jp-ipv6-aggregated.txt", age6)
	}
	t.Run("no countries", func(t *testing.T) {
		env, _, _ := testDoctorEnv(t, "", 0)
		wantResult(t, newDoctor(env).checkLists()[0], Skip, "allow_countries is empty", "")
	})
	t.Run("cache fresh", func(t *testing.T) {
		state := t.TempDir()
		jp(t, filepath.Join(state, "lists"), 3*time.Hour, 30*time.Hour)
		env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\n", state), 0o600)
		wantResult(t, newDoctor(env).checkLists()[0], Pass, "2 lists in "+filepath.Join(state, "lists")+", oldest confirmed 30h0m0s ago (limit 2d)", "")
	})
	t.Run("cache stale beyond 2x refresh", func(t *testing.T) {
		state := t.TempDir()
		jp(t, filepath.Join(state, "lists"), 3*time.Hour, 49*time.Hour)
		env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\nrefresh = \"24h\"\n", state), 0o600)
		got := newDoctor(env).checkLists()[0]
		wantResult(t, got, Warn, "1 of 2 lists not confirmed current within 2d", "sipsentry lists update")
		if !strings.Contains(got.Detail, "jp-ipv6 (2d)") || strings.Contains(got.Detail, "jp-ipv4") {
			t.Errorf("detail should name exactly the stale list: %q", got.Detail)
		}
	})
	t.Run("one family never downloaded", func(t *testing.T) {
		state := t.TempDir()
		copyList(t, filepath.Join(state, "lists"), "jp-ipv4.txt", "jp-ipv4-aggregated.txt", time.Hour)
		env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\n", state), 0o600)
		wantResult(t, newDoctor(env).checkLists()[0], Warn, "no usable list for jp-ipv6 in", "sipsentry lists update")
	})
	t.Run("missing list while enforcing a country drop", func(t *testing.T) {
		state := t.TempDir()
		env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\n[firewall]\nmode = \"enforce\"\n[engine]\ngeo_mode = \"drop\"\n", state), 0o600)
		got := newDoctor(env).checkLists()[0]
		wantResult(t, got, Fail, "no usable list for jp-ipv4, jp-ipv6", "sipsentry lists update")
		if !strings.Contains(got.Detail, "phones are dropped") {
			t.Errorf("detail does not say what it means: %q", got.Detail)
		}
	})
	t.Run("lists_dir: an IPv6 list in the IPv4 file is unusable", func(t *testing.T) {
		dir := t.TempDir()
		copyList(t, dir, "jp-ipv4.txt", "jp-ipv6-aggregated.txt", time.Hour)
		copyList(t, dir, "jp-ipv6.txt", "jp-ipv6-aggregated.txt", time.Hour)
		env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\nlists_dir = %q\n", t.TempDir(), dir), 0o600)
		got := newDoctor(env).checkLists()[0]
		wantResult(t, got, Warn, "no usable list for jp-ipv4 in "+dir, "sipsentry does not download into lists_dir")
		if !strings.Contains(got.Detail, "list=jp-ipv4") {
			t.Errorf("detail does not pass on geo's reason: %q", got.Detail)
		}
	})
	t.Run("lists_dir stale", func(t *testing.T) {
		dir := t.TempDir()
		jp(t, dir, 10*24*time.Hour, time.Hour)
		env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\nlists_dir = %q\nrefresh = \"2d\"\n", t.TempDir(), dir), 0o600)
		wantResult(t, newDoctor(env).checkLists()[0], Warn, "jp-ipv4 (10d)", "sipsentry does not download into lists_dir")
	})
	t.Run("lists_dir missing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		env, _, _ := testDoctorEnv(t, fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\nlists_dir = %q\n", t.TempDir(), dir), 0o600)
		wantResult(t, newDoctor(env).checkLists()[0], Fail, "geo.lists_dir", "correct the setting")
	})
}

func TestDoctorMMDB(t *testing.T) {
	geo := adminTestdata(t, "geo", "GeoLite2-Country-Test.mmdb")
	asn := adminTestdata(t, "geo", "GeoLite2-ASN-Test.mmdb")
	// builtOf reads a DB's build date so ages are set relative to it.
	builtOf := func(path string) time.Time {
		db, err := maxminddb.Open(path)
		if err != nil {
			return time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
		}
		defer db.Close()
		return time.Unix(int64(db.Metadata.BuildEpoch), 0)
	}
	built := builtOf(geo)
	notMMDB := filepath.Join(t.TempDir(), "x.mmdb")
	writeFile(t, notMMDB, "<html>not found</html>", 0o644)

	for _, tc := range []struct {
		name, key, path string
		age             time.Duration
		verdict         Status
		detailHas       string
		fixHas          string
	}{
		{"country not set", "geo.mmdb", "", 0, Warn, "column shows \"?\"", "set geo.mmdb"},
		{"asn not set", "geo.asn_mmdb", "", 0, Skip, "ASN/org columns stay empty", ""},
		{"missing file", "geo.mmdb", filepath.Join(t.TempDir(), "nope.mmdb"), 0, Warn, "no such file", "download a current country mmdb"},
		{"not an mmdb", "geo.mmdb", notMMDB, 0, Fail, "is not a MaxMind DB", "replace"},
		{"ASN database as the country one", "geo.mmdb", asn, 24 * time.Hour, Fail, "wrong kind of database", "point geo.mmdb at the right kind"},
		{"country database as the ASN one", "geo.asn_mmdb", geo, 24 * time.Hour, Fail, "wrong kind of database", "point geo.asn_mmdb"},
		{"ASN database fresh", "geo.asn_mmdb", asn, 24 * time.Hour, Pass, "GeoLite2-ASN", ""},
		{"fresh", "geo.mmdb", geo, 24 * time.Hour, Pass, built.UTC().Format("2006-01-02"), ""},
		{"61 days old", "geo.mmdb", geo, 61 * 24 * time.Hour, Warn, "61d ago (limit 60d)", "download a current country mmdb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, "", 0)
			at := builtOf(tc.path).Add(tc.age)
			env.Now = func() time.Time { return at }
			wantResult(t, newDoctor(env).checkMMDB(tc.key, tc.path), tc.verdict, tc.detailHas, tc.fixHas)
		})
	}
}

// ---- AMI: a fake Asterisk that answers with the recorded Asterisk 22 bytes ----

// transcriptBlocks splits a recorded transcript at its "#### S->C label"
// markers and returns the server's messages per label.
func transcriptBlocks(t *testing.T, name string) map[string][]ami.Message {
	t.Helper()
	data, err := os.ReadFile(adminTestdata(t, "asterisk", name))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]ami.Message{}
	parts := bytes.Split(data, []byte("#### "))
	for _, p := range parts {
		label, body, ok := bytes.Cut(p, []byte("\r\n"))
		if !ok || !bytes.HasPrefix(label, []byte("S->C ")) || bytes.Equal(label, []byte("S->C banner")) {
			continue
		}
		r := ami.NewReader(bytes.NewReader(body), ami.ReaderOptions{})
		for {
			m, err := r.ReadMessage()
			if err != nil {
				break
			}
			out[string(label[5:])] = append(out[string(label[5:])], m)
		}
	}
	return out
}

type fakeAsterisk struct {
	t            *testing.T
	ln           net.Listener
	secret       string
	readSecurity bool
	readSystem   bool
	writeSystem  bool
	writeAll     bool // like the recorded `full` user: write=all

	banner                        string
	loginOK, booted, successAuth  ami.Message
	loginFailed, denied, goodbye  ami.Message
	contacts                      []ami.Message
	mu                            sync.Mutex
	eventsAsked                   []string
	sawSecretOnWire, sawMD5Action bool
}

func newFakeAsterisk(t *testing.T, secret string, readSecurity, readSystem, writeSystem bool) *fakeAsterisk {
	return newFakeAsteriskAll(t, secret, readSecurity, readSystem, writeSystem, false)
}

func newFakeAsteriskAll(t *testing.T, secret string, readSecurity, readSystem, writeSystem, writeAll bool) *fakeAsterisk {
	t.Helper()
	f := &fakeAsterisk{t: t, secret: secret, readSecurity: readSecurity, readSystem: readSystem, writeSystem: writeSystem, writeAll: writeAll}
	s0, err := os.ReadFile(adminTestdata(t, "asterisk", "ami-s0-login.raw"))
	if err != nil {
		t.Fatal(err)
	}
	r := ami.NewReader(bytes.NewReader(s0), ami.ReaderOptions{})
	if f.banner, err = r.ReadBanner(); err != nil {
		t.Fatal(err)
	}
	var s0msgs []ami.Message
	for {
		m, err := r.ReadMessage()
		if err != nil {
			break
		}
		s0msgs = append(s0msgs, m)
	}
	if len(s0msgs) != 3 || s0msgs[1].Get("Event") != "FullyBooted" || s0msgs[2].Get("Event") != "SuccessfulAuth" {
		t.Fatalf("ami-s0-login.raw is not login response + FullyBooted + SuccessfulAuth: %+v", s0msgs)
	}
	f.loginOK, f.booted, f.successAuth = s0msgs[0], s0msgs[1], s0msgs[2]
	f.loginFailed = transcriptBlocks(t, "ami-login-badsecret.raw")["Login"][0]
	den := transcriptBlocks(t, "ami-sentry-denied-actions.raw")
	f.denied, f.goodbye = den["Originate"][0], den["Logoff"][0]
	f.contacts = transcriptBlocks(t, "ami-action-pjsipshowcontacts.raw")["PJSIPShowContacts"]
	if f.loginFailed.Get("Message") != "Authentication failed" || f.denied.Get("Message") != "Permission denied" || len(f.contacts) != 5 {
		t.Fatalf("recorded transcripts changed: %+v %+v %d", f.loginFailed, f.denied, len(f.contacts))
	}
	f.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ln.Close() })
	go f.serve()
	return f
}

func (f *fakeAsterisk) addr() string { return f.ln.Addr().String() }

// withID answers with the recorded message, its ActionID replaced by the request's.
func withID(m ami.Message, id string) ami.Message {
	out := ami.Message{Headers: append([]ami.Header(nil), m.Headers...)}
	for i := range out.Headers {
		if strings.EqualFold(out.Headers[i].Key, "ActionID") {
			out.Headers[i].Value = id
		}
	}
	return out
}

func (f *fakeAsterisk) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.session(c)
	}
}

func (f *fakeAsterisk) session(c net.Conn) {
	defer c.Close()
	fmt.Fprintf(c, "%s\r\n", f.banner)
	r := ami.NewReader(c, ami.ReaderOptions{})
	const challenge = "642625458"
	loggedIn := false
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return
		}
		id := m.Get("ActionID")
		switch strings.ToLower(m.Get("Action")) {
		case "challenge":
			f.mu.Lock()
			f.sawMD5Action = true
			f.mu.Unlock()
			_ = ami.WriteMessage(c, ami.Message{Headers: []ami.Header{{Key: "Response", Value: "Success"}, {Key: "ActionID", Value: id}, {Key: "Challenge", Value: challenge}}})
		case "login":
			f.mu.Lock()
			f.eventsAsked = append(f.eventsAsked, m.Get("Events"))
			if m.Has("Secret") {
				f.sawSecretOnWire = true
			}
			f.mu.Unlock()
			sum := md5.Sum([]byte(challenge + f.secret))
			ok := m.Get("Secret") == f.secret || (strings.EqualFold(m.Get("AuthType"), "md5") && m.Get("Key") == hex.EncodeToString(sum[:]))
			if !ok {
				_ = ami.WriteMessage(c, withID(f.loginFailed, id))
				continue
			}
			loggedIn = true
			_ = ami.WriteMessage(c, withID(f.loginOK, id))
			// What Asterisk does: FullyBooted only with read=system (and
			// system in the event mask); the login's own SuccessfulAuth only
			// with read=security.
			events := strings.ToLower(m.Get("Events"))
			if f.readSystem && (events == "on" || strings.Contains(events, "system")) {
				_ = ami.WriteMessage(c, f.booted)
			}
			if f.readSecurity && (events == "on" || strings.Contains(events, "security")) {
				_ = ami.WriteMessage(c, f.successAuth)
			}
		case "listcommands":
			// Asterisk lists the actions whose class the user may write, one
			// header per action ("Name: synopsis (Priv: classes)"). The
			// classes here are how manager.c registers these actions.
			resp := ami.Message{Headers: []ami.Header{{Key: "Response", Value: "Success"}, {Key: "ActionID", Value: id}}}
			for _, a := range []struct{ name, priv string }{
				{"Ping", "<none>"}, {"Logoff", "<none>"}, {"ListCommands", "<none>"},
				{"PJSIPShowContacts", "system,all"}, {"Reload", "system,config,all"},
				{"Originate", "originate,all"}, {"Command", "command,all"}, {"UpdateConfig", "config,all"},
			} {
				ok := a.priv == "<none>" || f.writeAll || (f.writeSystem && strings.Contains(a.priv, "system"))
				if ok {
					resp.Headers = append(resp.Headers, ami.Header{Key: a.name, Value: "synopsis (Priv: " + a.priv + ")"})
				}
			}
			_ = ami.WriteMessage(c, resp)
		case "pjsipshowcontacts":
			if !loggedIn || !(f.writeSystem || f.writeAll) {
				_ = ami.WriteMessage(c, withID(f.denied, id))
				continue
			}
			for _, cm := range f.contacts {
				_ = ami.WriteMessage(c, withID(cm, id))
			}
		case "logoff":
			_ = ami.WriteMessage(c, withID(f.goodbye, id))
			return
		}
	}
}

func amiConfig(addr, auth, secretFile string) string {
	return fmt.Sprintf("[ami]\naddress = %q\nusername = \"sipsentry\"\nauth = %q\nsecret_file = %q\ntimeout = \"5s\"\n", addr, auth, secretFile)
}

func TestDoctorAMI(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "ami.secret")
	writeFile(t, secretFile, "sentry-secret\n", 0o600)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	type want struct {
		status    Status
		detailHas string
	}
	for _, tc := range []struct {
		name                        string
		auth                        string
		serverSecret                string
		readSec, readSys, writeSys  bool
		writeAll                    bool
		noServer                    bool
		connect, login, sec, sys, w want
		least                       want
	}{
		{
			name: "all classes, md5", auth: "md5", serverSecret: "sentry-secret", readSec: true, readSys: true, writeSys: true,
			connect: want{Pass, "Asterisk Call Manager/11.0.0"}, login: want{Pass, "Authentication accepted"},
			sec: want{Pass, "security event arrived"}, sys: want{Pass, "FullyBooted arrived"}, w: want{Pass, "3 contacts"},
			least: want{Pass, "ListCommands offers 5 actions, none of Originate, Command, UpdateConfig"},
		},
		{
			name: "write=all (the recorded full user)", auth: "md5", serverSecret: "sentry-secret", readSec: true, readSys: true, writeAll: true,
			connect: want{Pass, "answers"}, login: want{Pass, "accepted"},
			sec: want{Pass, "security event"}, sys: want{Pass, "FullyBooted"}, w: want{Pass, "3 contacts"},
			least: want{Warn, "may also run Originate, Command, UpdateConfig"},
		},
		{
			name: "all classes, plain", auth: "plain", serverSecret: "sentry-secret", readSec: true, readSys: true, writeSys: true,
			connect: want{Pass, "answers"}, login: want{Pass, "logged in as sipsentry"},
			sec: want{Pass, "security event"}, sys: want{Pass, "FullyBooted"}, w: want{Pass, "PJSIPShowContacts allowed"},
			least: want{Pass, "none of"},
		},
		{
			name: "read=security only, no write (the recorded sentry user without system)", auth: "md5", serverSecret: "sentry-secret", readSec: true,
			connect: want{Pass, "answers"}, login: want{Pass, "accepted"},
			sec: want{Pass, "security event"}, sys: want{Warn, "no FullyBooted"}, w: want{Warn, "permission denied"},
			least: want{Pass, "ListCommands offers 3 actions"},
		},
		{
			name: "read=system only", auth: "md5", serverSecret: "sentry-secret", readSys: true, writeSys: true,
			connect: want{Pass, "answers"}, login: want{Pass, "accepted"},
			sec: want{Fail, "no security event"}, sys: want{Pass, "FullyBooted"}, w: want{Pass, "allowed"},
			least: want{Pass, "none of"},
		},
		{
			name: "wrong secret", auth: "md5", serverSecret: "other-secret", readSec: true, readSys: true, writeSys: true,
			connect: want{Pass, "answers"}, login: want{Fail, "\"Authentication failed\""},
			sec: want{Skip, "not logged in"}, sys: want{Skip, "not logged in"}, w: want{Skip, "not logged in"},
			least: want{Skip, "not logged in"},
		},
		{
			name: "nothing listening", auth: "md5", noServer: true,
			connect: want{Fail, closedAddr}, login: want{Skip, "AMI not reached"},
			sec: want{Skip, ""}, sys: want{Skip, ""}, w: want{Skip, ""},
			least: want{Skip, ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := closedAddr
			var srv *fakeAsterisk
			if !tc.noServer {
				srv = newFakeAsteriskAll(t, tc.serverSecret, tc.readSec, tc.readSys, tc.writeSys, tc.writeAll)
				addr = srv.addr()
			}
			env, _, _ := testDoctorEnv(t, amiConfig(addr, tc.auth, secretFile), 0o600)
			rs := newDoctor(env).checkAMI(context.Background())
			if len(rs) != 6 {
				t.Fatalf("got %d AMI results, want 6", len(rs))
			}
			wantResult(t, rs[0], tc.connect.status, tc.connect.detailHas, "manager.conf")
			wantResult(t, rs[1], tc.login.status, tc.login.detailHas, "contrib/asterisk/manager.conf")
			wantResult(t, rs[2], tc.sec.status, tc.sec.detailHas, "read = security,system")
			wantResult(t, rs[3], tc.sys.status, tc.sys.detailHas, "read = security,system")
			wantResult(t, rs[4], tc.w.status, tc.w.detailHas, "")
			wantResult(t, rs[5], tc.least.status, tc.least.detailHas, "write = system (nothing else)")
			if tc.w.status == Warn && !strings.Contains(rs[4].Fix, "write = system") {
				t.Errorf("write fix %q does not say write = system", rs[4].Fix)
			}
			if srv != nil {
				srv.mu.Lock()
				defer srv.mu.Unlock()
				if len(srv.eventsAsked) != 1 || srv.eventsAsked[0] != "security,system" {
					t.Errorf("login asked for events %q, want exactly security,system", srv.eventsAsked)
				}
				if tc.auth == "md5" && (srv.sawSecretOnWire || !srv.sawMD5Action) {
					t.Errorf("md5 auth: secret on the wire %v, challenge asked %v", srv.sawSecretOnWire, srv.sawMD5Action)
				}
			}
			for _, r := range rs {
				if strings.Contains(r.Detail+r.Fix, "sentry-secret") {
					t.Errorf("secret leaked into %+v", r)
				}
			}
		})
	}
}

func TestDoctorARI(t *testing.T) {
	info, err := os.ReadFile(adminTestdata(t, "asterisk", "ari-asterisk-info.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		u, p, ok := r.BasicAuth()
		if !ok || u != "ari" || p != "ari-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/ari/asterisk/info" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(info)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, cfg string
		verdict   Status
		detailHas string
		fixHas    string
	}{
		{"not configured", "", Skip, "AMI alone is a complete setup", ""},
		{"ok with /ari", fmt.Sprintf("[ari]\nurl = %q\nusername = \"ari\"\npassword = \"ari-secret\"\n", srv.URL+"/ari"), Pass, "Asterisk 22.10.1", ""},
		{"ok without /ari", fmt.Sprintf("[ari]\nurl = %q\nusername = \"ari\"\npassword = \"ari-secret\"\n", srv.URL), Pass, "Asterisk 22.10.1", ""},
		{"wrong password", fmt.Sprintf("[ari]\nurl = %q\nusername = \"ari\"\npassword = \"nope\"\n", srv.URL+"/ari"), Fail, "401", "ari.conf"},
		{"not ARI", fmt.Sprintf("[ari]\nurl = %q\nusername = \"ari\"\npassword = \"ari-secret\"\n", srv.URL+"/x/ari"), Fail, "HTTP 404", "res_ari"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _, _ := testDoctorEnv(t, tc.cfg, 0o600)
			if tc.cfg == "" {
				env.ConfigPath = filepath.Join(t.TempDir(), "absent.toml")
			}
			got := newDoctor(env).checkARI(context.Background())
			wantResult(t, got, tc.verdict, tc.detailHas, tc.fixHas)
			if strings.Contains(got.Detail, "ari-secret") {
				t.Errorf("password leaked: %q", got.Detail)
			}
		})
	}
	if gotPath == "" {
		t.Error("the ARI server was never asked")
	}
}

// TestRun runs every check against fakes: no check fails on a good
// installation, and one missing secret file fails exactly as the command's
// exit rule needs (the printing and exit code are tested in cmd/sipsentry).
func TestRun(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "ami.secret")
	writeFile(t, secretFile, "sentry-secret\n", 0o600)
	srv := newFakeAsterisk(t, "sentry-secret", true, true, true)
	state := t.TempDir()
	good := amiConfig(srv.addr(), "md5", secretFile) + "[firewall]\nbackend = \"dry-run\"\n"
	good = fmt.Sprintf("state_dir = %q\n", state) + good

	env, _, _ := testDoctorEnv(t, good, 0o600)
	rs := Run(context.Background(), env)
	if Failed(rs) {
		t.Fatalf("no check should fail, got %+v", rs)
	}
	if len(rs) < 15 {
		t.Fatalf("%d checks", len(rs))
	}
	// The JSON names are the command's contract: check, status, detail, fix.
	raw, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	var rep []struct {
		Check, Status, Detail, Fix string
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("results are not JSON: %v\n%s", err, raw)
	}
	byName := map[string]string{}
	for _, c := range rep {
		byName[c.Check] = c.Status
	}
	for name, status := range map[string]string{"config file": "pass", "ami.secret_file": "pass", "ami read=security": "pass", "ami write=system": "pass", "module xt_set": "skip", "geo.mmdb": "warn", "state dir": "pass"} {
		if byName[name] != status {
			t.Errorf("check %q: status %q, want %q", name, byName[name], status)
		}
	}

	// One failing check makes Failed true, and that check says what to do.
	bad := strings.Replace(good, secretFile, filepath.Join(t.TempDir(), "missing.secret"), 1)
	env, _, _ = testDoctorEnv(t, bad, 0o600)
	rs = Run(context.Background(), env)
	if !Failed(rs) {
		t.Fatalf("Failed = false with a missing secret file: %+v", rs)
	}
	found := false
	for _, r := range rs {
		if r.Name == "ami.secret_file" {
			found = true
			wantResult(t, r, Fail, "no such file", "create ")
		}
	}
	if !found {
		t.Error("no ami.secret_file result")
	}
}

// Issue 12: a PBX with no registered contact answers PJSIPShowContacts with
// "No Contacts found"; doctor must not call that broken.
func TestDoctorAMINoContactsFoundPasses(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "ami.secret")
	writeFile(t, secretFile, "sentry-secret\n", 0o600)
	srv := amitest.NewServer(t, amitest.Options{Handler: func(c *amitest.Conn, req ami.Message) bool {
		if !strings.EqualFold(req.Get("Action"), "PJSIPShowContacts") {
			return false
		}
		c.Write([]byte("Response: Error\r\nActionID: " + req.Get("ActionID") + "\r\nMessage: No Contacts found\r\n\r\n"))
		return true
	}})
	cfg := strings.Replace(amiConfig(srv.Addr(), "md5", secretFile), `username = "sipsentry"`, `username = "sentry"`, 1)
	env, _, _ := testDoctorEnv(t, cfg, 0o600)
	rs := newDoctor(env).checkAMI(context.Background())
	wantResult(t, rs[1], Pass, "Authentication accepted", "")
	wantResult(t, rs[4], Pass, "PJSIPShowContacts allowed (0 contacts registered)", "")
}

// Issue 9: doctor built iptables whatever the config said. It now builds
// the backend through the one chooser (fwopen), so a dry-run config reads
// the dry-run backend.
func TestDoctorBuildsTheConfiguredBackend(t *testing.T) {
	env := SystemEnv(filepath.Join(t.TempDir(), "none.toml"), false)
	cfg := config.Default().Firewall
	cfg.Backend = "dry-run"
	st, err := env.FirewallStatus(context.Background(), cfg)
	if err != nil {
		t.Fatalf("FirewallStatus(dry-run) = %v", err)
	}
	if st.Backend != "dry-run" {
		t.Errorf("doctor read the %q backend for firewall.backend = dry-run", st.Backend)
	}
}

// A lists_dir list that its checks refuse (a 10-line jp-ipv4.txt after a
// good one) runs on the last good copy: doctor warns and names the list
// and the way out, instead of PASS.
func TestDoctorWarnsOnARefusedList(t *testing.T) {
	state, dir := t.TempDir(), t.TempDir()
	for _, f := range [][2]string{{"jp-ipv4.txt", "jp-ipv4-aggregated.txt"}, {"jp-ipv6.txt", "jp-ipv6-aggregated.txt"}} {
		b, err := os.ReadFile(adminTestdata(t, "geo", f[1]))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f[0]), string(b), 0o644)
	}
	cfgText := fmt.Sprintf("state_dir = %q\n[geo]\nallow_countries = [\"JP\"]\nlists_dir = %q\n", state, dir)
	env, _, _ := testDoctorEnv(t, cfgText, 0o600)
	// A daemon's start stores the good copies.
	d := newDoctor(env)
	if _, err := geo.Open(daemon.GeoOptions(d.cfg.Geo, d.cfg.StateDir), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	wantResult(t, newDoctor(env).checkLists()[0], Pass, "2 lists", "")
	writeFile(t, filepath.Join(dir, "jp-ipv4.txt"), "1.0.0.0/24\n1.0.1.0/24\n1.0.2.0/23\n1.0.4.0/22\n1.0.8.0/21\n1.0.16.0/20\n1.0.32.0/19\n1.0.64.0/18\n1.0.128.0/17\n1.1.0.0/24\n", 0o644)
	wantResult(t, newDoctor(env).checkLists()[0], Warn, "jp-ipv4", "sipsentry lists accept")
}

// Drop mode's NFLOG copies need their modules: doctor checks them when the
// firewall enforces with firewall.nflog_group set, and not otherwise.
func TestDoctorChecksNFLOGModulesInDropVisibility(t *testing.T) {
	for _, tc := range []struct {
		cfg  string
		want bool
	}{
		{"[firewall]\nmode = \"enforce\"\nnflog_group = 5060\n", true},
		{"[firewall]\nmode = \"enforce\"\nnflog_group = 0\n", false},
		{"[firewall]\nmode = \"monitor\"\n", false},
	} {
		env, _, _ := testDoctorEnv(t, tc.cfg, 0o600)
		got := false
		for _, m := range newDoctor(env).neededModules() {
			if m.name == "xt_NFLOG" {
				got = true
			}
		}
		if got != tc.want {
			t.Errorf("%q: xt_NFLOG checked %v, want %v", tc.cfg, got, tc.want)
		}
	}
}
