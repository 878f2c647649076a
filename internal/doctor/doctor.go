// Package doctor checks everything a sipsentry installation depends on (the
// config file and secrets, AMI and ARI, the kernel's tools, modules and
// sipsentry's sets, the country lists and databases) and says, for each, how
// to fix what is wrong. The command `sipsentry doctor` prints its results.
//
// It must never change the system: it only reads (its one write is a probe
// file in state_dir, removed at once), logs in to AMI without sending any
// action that changes Asterisk, and never puts a secret into a result.
package doctor

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/daemon"
	"github.com/sipsentry/sipsentry/internal/geoconf"
)

// Status is a check's verdict. Only fail makes doctor exit 1.
type Status int

const (
	Pass Status = iota
	Warn
	Fail
	Skip // not applicable to this configuration
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	default:
		return "skip"
	}
}

func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is one line of the doctor's report: what was checked, what was
// found, and the one thing to do about it.
type Result struct {
	Name   string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func checkPass(name, detail string, args ...any) Result {
	return Result{Name: name, Status: Pass, Detail: fmt.Sprintf(detail, args...)}
}

func checkSkip(name, detail string, args ...any) Result {
	return Result{Name: name, Status: Skip, Detail: fmt.Sprintf(detail, args...)}
}

func checkWarn(name, fix, detail string, args ...any) Result {
	return Result{Name: name, Status: Warn, Detail: fmt.Sprintf(detail, args...), Fix: fix}
}

func checkFail(name, fix, detail string, args ...any) Result {
	return Result{Name: name, Status: Fail, Detail: fmt.Sprintf(detail, args...), Fix: fix}
}

// Env is everything outside the process the checks look at, so tests
// can point it at fakes.
type Env struct {
	ConfigPath  string
	ConfigGiven bool   // --config was passed: a missing file is then an error
	ProcModules string // /proc/modules
	SysModule   string // /sys/module
	ProcStatus  string // /proc/self/status
	// KernelConfigs are tried in order: /proc/config.gz, /boot/config-$(uname -r).
	KernelConfigs []string
	// Run executes a program with an argument list (never a shell) and
	// returns its combined output.
	Run      func(ctx context.Context, name string, args ...string) (string, error)
	LookPath func(file string) (string, error)
	Now      func() time.Time
	HTTP     *http.Client
	// AMIWait bounds how long the AMI probe waits for the events that prove
	// the read classes after the login was accepted.
	AMIWait time.Duration
	// FirewallStatus reads sipsentry's rules and sets from the kernel
	// (read-only).
	FirewallStatus func(ctx context.Context, cfg config.Firewall) (firewall.Status, error)
}

// SystemEnv is the real system: --config's path (given says whether the flag
// was passed), /proc, /sys, exec and the kernel.
func SystemEnv(configPath string, given bool) Env {
	return Env{
		ConfigPath:    configPath,
		ConfigGiven:   given,
		ProcModules:   "/proc/modules",
		SysModule:     "/sys/module",
		ProcStatus:    "/proc/self/status",
		KernelConfigs: []string{"/proc/config.gz", "/boot/config-" + doctorKernelRelease()},
		Run: func(ctx context.Context, name string, args ...string) (string, error) {
			out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
			return string(out), err
		},
		LookPath: exec.LookPath,
		Now:      time.Now,
		HTTP:     &http.Client{Timeout: 10 * time.Second},
		AMIWait:  3 * time.Second,
		FirewallStatus: func(ctx context.Context, cfg config.Firewall) (firewall.Status, error) {
			// The one backend chooser, as run and the CLI build it: what the
			// config names, not always iptables.
			b, err := daemon.OpenFirewall(cfg, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				return firewall.Status{}, err
			}
			defer b.Close()
			return b.Status(ctx)
		},
	}
}

func doctorKernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// Run runs every check in a fixed order and returns their results. The
// configuration is read from env.ConfigPath by the checks themselves: a
// missing or broken file is a result, and the other checks then judge the
// built-in defaults, so one report shows everything.
func Run(ctx context.Context, env Env) []Result {
	return newDoctor(env).checks(ctx)
}

// Failed reports whether any result failed (doctor then exits 1).
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// doctor holds the configuration the checks judge. When the file is missing
// or broken the checks still run against the built-in defaults, so one
// report shows everything.
type doctor struct {
	env     Env
	cfg     *config.Config
	cfgData []byte
	cfgErr  error
	cfgMode fs.FileMode
}

func newDoctor(env Env) *doctor {
	d := &doctor{env: env, cfg: config.Default()}
	data, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		d.cfgErr = err
		return d
	}
	if st, err := os.Stat(env.ConfigPath); err == nil {
		d.cfgMode = st.Mode().Perm()
	}
	d.cfgData = data
	c, err := config.Parse(env.ConfigPath, data)
	if err != nil {
		d.cfgErr = err
		return d
	}
	d.cfg = c
	return d
}

func (d *doctor) checks(ctx context.Context) []Result {
	var rs []Result
	rs = append(rs, d.checkConfigFile())
	rs = append(rs, d.checkAMISecret())
	rs = append(rs, d.checkSecretFile("ari.password_file", d.cfg.ARI.PasswordFile))
	rs = append(rs, d.checkAMITransport())
	rs = append(rs, d.checkAMI(ctx)...)
	rs = append(rs, d.checkARI(ctx))
	rs = append(rs, d.checkCapNetAdmin())
	rs = append(rs, d.checkIptables(ctx, "iptables"), d.checkIptables(ctx, "ip6tables"), d.checkIpset(ctx))
	for _, m := range d.neededModules() {
		rs = append(rs, d.checkModule(ctx, m.name, m.config))
	}
	rs = append(rs, d.checkFirewall(ctx))
	rs = append(rs, d.checkStateDir())
	rs = append(rs, d.checkLists()...)
	rs = append(rs, d.checkMMDB("geo.mmdb", d.cfg.Geo.MMDB), d.checkMMDB("geo.asn_mmdb", d.cfg.Geo.ASNMMDB))
	rs = append(rs, d.checkCrowdsec(ctx)...)
	return rs
}

// ---- configuration ----

const doctorFixCreateConfig = "install -m 600 contrib/sipsentry.toml /etc/sipsentry/sipsentry.toml, then edit it (or pass --config FILE)"

func (d *doctor) checkConfigFile() Result {
	const name = "config file"
	path := d.env.ConfigPath
	if d.cfgErr != nil {
		if errors.Is(d.cfgErr, fs.ErrNotExist) {
			if d.env.ConfigGiven {
				return checkFail(name, doctorFixCreateConfig, "%s does not exist", path)
			}
			return checkWarn(name, doctorFixCreateConfig, "%s does not exist: the checks below use the built-in defaults", path)
		}
		var ce *config.Error
		if errors.As(d.cfgErr, &ce) {
			return checkFail(name, "correct the line named above (every key is documented in contrib/sipsentry.toml); `sipsentry config check` re-checks",
				"%v (the checks below use the built-in defaults)", d.cfgErr)
		}
		return checkFail(name, "make the file readable by the user running sipsentry (root)", "%v", d.cfgErr)
	}
	if err := config.CheckOwner(path); err != nil {
		return checkFail(name, doctorOwnerFix(err, path), "%v", err)
	}
	inline := d.cfg.AMI.Secret != "" || d.cfg.ARI.Password != ""
	if inline && d.cfgMode&0o077 != 0 {
		return checkFail(name, "chmod 600 "+path+" (or move the secret into secret_file)",
			"%s is mode %04o and holds a secret in the file: group or others can read it", path, d.cfgMode)
	}
	if inline {
		return checkPass(name, "%s parsed; mode %04o, holds a secret, readable by its owner only", path, d.cfgMode)
	}
	return checkPass(name, "%s parsed; mode %04o, no secret inside", path, d.cfgMode)
}

func (d *doctor) checkAMISecret() Result {
	const name = "ami secret"
	a := d.cfg.AMI
	switch {
	case a.SecretFile != "":
		return d.checkSecretFile("ami.secret_file", a.SecretFile)
	case a.Secret != "":
		return checkPass(name, "inline [ami] secret (the config file's mode is checked above)")
	default:
		return checkFail(name, "write the AMI user's secret into /etc/sipsentry/ami.secret (chmod 600) and set [ami] secret_file to it",
			"[ami] has neither secret nor secret_file")
	}
}

func (d *doctor) checkSecretFile(key, path string) Result {
	if path == "" {
		return checkSkip(key, "not set")
	}
	st, err := os.Stat(path)
	if err != nil {
		return checkFail(key, "create "+path+" holding the secret on one line, then chmod 600 "+path, "%v", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return checkFail(key, "chmod 600 "+path, "%s is mode %04o: group or others can read the secret", path, st.Mode().Perm())
	}
	if err := config.CheckOwner(path); err != nil {
		return checkFail(key, doctorOwnerFix(err, path), "%v", err)
	}
	if _, err := config.ReadSecretFile(path); err != nil {
		return checkFail(key, "write the secret into "+path+" on one line", "%v", err)
	}
	return checkPass(key, "%s is mode %04o and not empty", path, st.Mode().Perm())
}

// doctorOwnerFix is the command config.CheckOwner's message names.
func doctorOwnerFix(err error, path string) string {
	if _, fix, ok := strings.Cut(err.Error(), "; run: "); ok {
		return fix
	}
	return "chown root " + path + " && chmod go-w " + path
}

// ---- AMI ----

// amiProbe is what one short AMI session found out. The verdicts are judged
// from it by small functions, so tests can judge made-up probes too.
type amiProbe struct {
	address     string
	username    string
	secretErr   error
	dialErr     error
	banner      string
	loginErr    error // a transport error or a refusal
	loginMsg    string
	gotSecurity bool   // an event with Privilege security arrived
	gotBooted   bool   // FullyBooted arrived (only sent with read=system)
	contacts    string // response to PJSIPShowContacts: "Success" or the error message
	contactsN   int
	// actions are the names ListCommands returned: the actions this user's
	// write classes allow (nil when ListCommands was not answered).
	actions map[string]bool
	wait    time.Duration
}

func (d *doctor) checkAMI(ctx context.Context) []Result {
	p := d.probeAMI(ctx)
	return []Result{
		judgeAMIConnect(p),
		judgeAMILogin(p),
		judgeAMIReadSecurity(p),
		judgeAMIReadSystem(p),
		judgeAMIWriteSystem(p),
		judgeAMILeastPrivilege(p),
	}
}

// probeAMI logs in with the AMI client's own login (the daemon's, not a
// copy) with Events: security,system and watches what arrives. Asterisk
// sends FullyBooted right after the login response, but only to a session
// whose read classes include system; and it reports every AMI login as a
// SuccessfulAuth security event, which reaches this very session only with
// read=security. PJSIPShowContacts needs write=system; a PBX with no
// registered contact answers it "No Contacts found", which the client
// returns as an empty list (issue 12: not a broken PBX).
func (d *doctor) probeAMI(ctx context.Context) amiProbe {
	c := d.cfg.AMI
	p := amiProbe{address: c.Address, username: c.Username, wait: d.env.AMIWait}
	secret, err := d.cfg.AMISecret()
	if err != nil {
		p.secretErr = err
		return p
	}
	cc, err := daemon.AMIClientConfig(d.cfg, secret, slog.New(slog.DiscardHandler))
	if err != nil {
		p.dialErr = err
		return p
	}
	var (
		mu            sync.Mutex // guards gotBooted, gotSecurity
		booted, sec   bool
		bothArrived   = make(chan struct{})
		bothSignalled bool
	)
	cc.OnMessage = func(m ami.Message) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.EqualFold(m.Get("Event"), "FullyBooted"):
			booted = true
		case strings.HasPrefix(strings.ToLower(m.Get("Privilege")), "security"):
			sec = true
		}
		if booted && sec && !bothSignalled {
			bothSignalled = true
			close(bothArrived)
		}
	}
	client := ami.NewClient(cc)
	err = client.Connect(ctx)
	p.banner = client.Banner()
	if err != nil {
		var ae *ami.AuthError
		switch {
		case errors.As(err, &ae):
			p.loginErr, p.loginMsg = errors.New("login refused"), ae.Message
		case p.banner != "":
			p.loginErr = err
		default:
			p.dialErr = err
		}
		return p
	}
	defer client.Close()
	loggedIn := time.Now()
	p.loginMsg = client.LoginMessage()

	contacts, err := client.PJSIPShowContacts(ctx)
	var refused *ami.ActionError
	switch {
	case err == nil:
		p.contacts, p.contactsN = "Success", len(contacts)
	case errors.As(err, &refused):
		p.contacts = refused.Message
		if p.contacts == "" {
			p.contacts = "Error"
		}
	}
	// ListCommands (no class needed) lists the actions the user may run.
	if resp, err := client.Action(ctx, ami.Message{Headers: []ami.Header{{Key: "Action", Value: "ListCommands"}}}); err == nil {
		p.actions = map[string]bool{}
		for _, h := range resp.Headers {
			switch strings.ToLower(h.Key) {
			case "response", "actionid", "message":
			default:
				p.actions[strings.ToLower(h.Key)] = true
			}
		}
	}
	// Wait (bounded) for the events that prove the read classes.
	t := time.NewTimer(time.Until(loggedIn.Add(d.env.AMIWait)))
	select {
	case <-bothArrived:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	mu.Lock()
	p.gotBooted, p.gotSecurity = booted, sec
	mu.Unlock()
	return p
}

const doctorFixAMIUser = "add the [sipsentry] user from contrib/asterisk/manager.conf (read = security,system; write = system; permit = 127.0.0.1), then: asterisk -rx 'manager reload'"

func judgeAMIConnect(p amiProbe) Result {
	const name = "ami reachable"
	switch {
	case p.secretErr != nil:
		return checkSkip(name, "no secret to log in with (see ami secret)")
	case p.dialErr != nil:
		return checkFail(name, "enable AMI in /etc/asterisk/manager.conf ([general] enabled = yes, port = 5038, bindaddr = 127.0.0.1) and make [ami] address match",
			"%s: %v", p.address, p.dialErr)
	}
	return checkPass(name, "%s answers: %s", p.address, p.banner)
}

func judgeAMILogin(p amiProbe) Result {
	const name = "ami login"
	switch {
	case p.secretErr != nil || p.dialErr != nil:
		return checkSkip(name, "AMI not reached")
	case p.loginErr != nil && p.loginMsg != "":
		return checkFail(name, doctorFixAMIUser+"; the secret must equal [ami] secret_file",
			"Asterisk refused %s at %s: %q (it answers the same for a wrong secret, an unknown user and an ACL deny)", p.username, p.address, p.loginMsg)
	case p.loginErr != nil:
		return checkFail(name, "check that Asterisk's AMI is healthy: asterisk -rx 'manager show settings'", "login as %s: %v", p.username, p.loginErr)
	}
	return checkPass(name, "logged in as %s: %s", p.username, p.loginMsg)
}

func judgeAMIReadSecurity(p amiProbe) Result {
	const name = "ami read=security"
	if p.secretErr != nil || p.dialErr != nil || p.loginErr != nil {
		return checkSkip(name, "not logged in")
	}
	if p.gotSecurity {
		return checkPass(name, "a security event arrived (Asterisk reports every AMI login as SuccessfulAuth)")
	}
	return checkFail(name, "set read = security,system for the user in /etc/asterisk/manager.conf; check with: asterisk -rx 'manager show user "+p.username+"'",
		"no security event within %s of the login: without read=security sipsentry sees no attack", p.wait)
}

func judgeAMIReadSystem(p amiProbe) Result {
	const name = "ami read=system"
	if p.secretErr != nil || p.dialErr != nil || p.loginErr != nil {
		return checkSkip(name, "not logged in")
	}
	if p.gotBooted {
		return checkPass(name, "FullyBooted arrived (Asterisk sends it at login only to sessions with read=system)")
	}
	return checkWarn(name, "set read = security,system for the user in /etc/asterisk/manager.conf (if Asterisk was still starting, run doctor again)",
		"no FullyBooted within %s of the login: contact and peer status events will not arrive", p.wait)
}

func judgeAMIWriteSystem(p amiProbe) Result {
	const name = "ami write=system"
	switch {
	case p.secretErr != nil || p.dialErr != nil || p.loginErr != nil:
		return checkSkip(name, "not logged in")
	case p.contacts == "Success":
		return checkPass(name, "PJSIPShowContacts allowed (%d contacts registered)", p.contactsN)
	case strings.Contains(strings.ToLower(p.contacts), "permission denied"):
		return checkWarn(name, "set write = system for the user in /etc/asterisk/manager.conf (nothing more: sipsentry only reads contacts)",
			"PJSIPShowContacts: permission denied: push servers cannot be recognised from their contact")
	case p.contacts == "":
		return checkWarn(name, "check that Asterisk answers actions: asterisk -rx 'manager show connected'", "no answer to PJSIPShowContacts")
	}
	return checkWarn(name, "load res_pjsip (module load res_pjsip.so): sipsentry reads contacts through PJSIPShowContacts",
		"PJSIPShowContacts failed: %s", p.contacts)
}

// doctorRiskyActions are actions sipsentry never needs and an attacker who
// steals its secret would love: placing calls and running CLI commands.
// (Actions of the system class itself, e.g. Reload, come with write=system:
// Asterisk has no narrower class that allows PJSIPShowContacts.)
var doctorRiskyActions = []string{"Originate", "Command", "UpdateConfig"}

func judgeAMILeastPrivilege(p amiProbe) Result {
	const name = "ami least privilege"
	switch {
	case p.secretErr != nil || p.dialErr != nil || p.loginErr != nil:
		return checkSkip(name, "not logged in")
	case p.actions == nil:
		return checkWarn(name, "check the user's write classes by hand: asterisk -rx 'manager show user "+p.username+"'",
			"ListCommands was not answered; the user's write classes are unknown")
	}
	var risky []string
	for _, a := range doctorRiskyActions {
		if p.actions[strings.ToLower(a)] {
			risky = append(risky, a)
		}
	}
	if len(risky) > 0 {
		return checkWarn(name, "set write = system (nothing else) for the user in /etc/asterisk/manager.conf, then: asterisk -rx 'manager reload'",
			"the sipsentry AMI user may also run %s: whoever steals its secret could use them", strings.Join(risky, ", "))
	}
	return checkPass(name, "ListCommands offers %d actions, none of %s", len(p.actions), strings.Join(doctorRiskyActions, ", "))
}

// checkAMITransport warns when AMI crosses a network in clear text: the
// events and (with auth = plain) the secret could be read on the way.
func (d *doctor) checkAMITransport() Result {
	const name = "ami transport"
	a := d.cfg.AMI
	host, _, err := net.SplitHostPort(a.Address)
	if err != nil {
		return checkFail(name, "set ami.address to host:port, e.g. 127.0.0.1:5038", "%q is not host:port", a.Address)
	}
	loopback := host == "localhost"
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		loopback = true
	}
	switch {
	case a.TLS:
		return checkPass(name, "TLS to %s", a.Address)
	case loopback:
		return checkPass(name, "%s is loopback", a.Address)
	case a.Auth == "plain":
		return checkWarn(name, "set ami.tls = true (manager.conf tlsenable) or run sipsentry on the Asterisk host; at least use auth = \"md5\"",
			"%s is not loopback and the secret crosses it in clear text (auth = plain, no TLS)", a.Address)
	}
	return checkWarn(name, "set ami.tls = true (manager.conf tlsenable) or run sipsentry on the Asterisk host",
		"%s is not loopback and AMI is not encrypted: the security events cross the network in clear text", a.Address)
}

// ---- ARI ----

func (d *doctor) checkARI(ctx context.Context) Result {
	const name = "ari"
	a := d.cfg.ARI
	if a.URL == "" {
		return checkSkip(name, "[ari] url not set: AMI alone is a complete setup")
	}
	pw, err := d.cfg.ARIPassword()
	if err != nil {
		return checkFail(name, "fix [ari] password_file (see above)", "%v", err)
	}
	u := doctorARIInfoURL(a.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return checkFail(name, "set [ari] url to e.g. http://127.0.0.1:8088/ari", "bad url %q: %v", a.URL, err)
	}
	req.SetBasicAuth(a.Username, pw)
	resp, err := d.env.HTTP.Do(req)
	if err != nil {
		return checkFail(name, "enable Asterisk's HTTP server (http.conf: enabled = yes, bindaddr = 127.0.0.1) and ARI (ari.conf: enabled = yes)",
			"GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return checkFail(name, "add the ARI user to /etc/asterisk/ari.conf with the password in [ari] password_file",
			"GET %s: 401: Asterisk refused user %q", u, a.Username)
	case resp.StatusCode != http.StatusOK:
		return checkFail(name, "check ari.conf and http.conf; res_ari must be loaded", "GET %s: HTTP %d", u, resp.StatusCode)
	}
	var info struct {
		System struct {
			Version string `json:"version"`
		} `json:"system"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.System.Version == "" {
		return checkFail(name, "point [ari] url at Asterisk's ARI (e.g. http://127.0.0.1:8088/ari)", "GET %s: 200 but not ARI's asterisk info", u)
	}
	return checkPass(name, "GET %s: Asterisk %s (the event websocket is not tested)", u, info.System.Version)
}

// doctorARIInfoURL accepts the base URL with or without the /ari suffix.
func doctorARIInfoURL(base string) string {
	base = strings.TrimRight(base, "/")
	if !strings.HasSuffix(base, "/ari") {
		base += "/ari"
	}
	return base + "/asterisk/info"
}

// ---- privileges, tools and kernel ----

const doctorCapNetAdmin = 12

func (d *doctor) checkCapNetAdmin() Result {
	const name = "CAP_NET_ADMIN"
	if d.cfg.Firewall.Backend == "dry-run" {
		return checkSkip(name, "firewall.backend = dry-run")
	}
	data, err := os.ReadFile(d.env.ProcStatus)
	if err != nil {
		return checkWarn(name, "run doctor as root", "cannot read %s: %v", d.env.ProcStatus, err)
	}
	caps, ok := doctorParseCapEff(string(data))
	if !ok {
		return checkWarn(name, "run doctor as root", "no CapEff line in %s", d.env.ProcStatus)
	}
	if caps&(1<<doctorCapNetAdmin) != 0 {
		return checkPass(name, "held by this process (CapEff %016x)", caps)
	}
	return checkWarn(name, "run doctor as root (sudo sipsentry doctor); the daemon gets the capability from contrib/sipsentry.service (AmbientCapabilities=CAP_NET_ADMIN)",
		"this process lacks it: the firewall commands will fail and some checks below see less")
}

// doctorParseCapEff reads the effective capability mask from /proc/<pid>/status.
func doctorParseCapEff(status string) (uint64, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}

const doctorFixFirewallTools = "apt-get install iptables ipset (or dnf install iptables-nft ipset)"

func (d *doctor) checkIptables(ctx context.Context, bin string) Result {
	if d.cfg.Firewall.Backend == "dry-run" {
		return checkSkip(bin, "firewall.backend = dry-run")
	}
	if _, err := d.env.LookPath(bin); err != nil {
		return checkFail(bin, doctorFixFirewallTools, "%s not found in PATH", bin)
	}
	out, err := d.env.Run(ctx, bin, "-V")
	if err != nil {
		return checkFail(bin, "reinstall iptables", "%s -V: %v: %s", bin, err, strings.TrimSpace(out))
	}
	v := strings.TrimSpace(out)
	switch {
	case strings.Contains(v, "(nf_tables)"):
		return checkPass(bin, "%s: nf_tables backend", v)
	case strings.Contains(v, "(legacy)"):
		return checkPass(bin, "%s: legacy backend (works; rules made by other tools with the nf_tables backend live in a different table set)", v)
	}
	return checkWarn(bin, "install iptables 1.8 or later", "%s: backend not named", v)
}

func (d *doctor) checkIpset(ctx context.Context) Result {
	const name = "ipset"
	if d.cfg.Firewall.Backend == "dry-run" {
		return checkSkip(name, "firewall.backend = dry-run")
	}
	if _, err := d.env.LookPath("ipset"); err != nil {
		return checkFail(name, doctorFixFirewallTools, "ipset not found in PATH (sipsentry uses it for bulk loads)")
	}
	out, err := d.env.Run(ctx, "ipset", "version")
	if err != nil {
		return checkFail(name, "load the ip_set module (modprobe ip_set) or run doctor as root", "ipset version: %v: %s", err, strings.TrimSpace(out))
	}
	return checkPass(name, "%s", strings.TrimSpace(out))
}

// doctorModules are what the ipset+iptables backend needs: sets, the
// iptables set match, and conntrack with its netlink interface (a ban deletes
// the source's conntrack entries). Each with its kernel config symbol, since
// a built-in module without parameters shows up neither in /proc/modules nor
// in /sys/module.
var doctorModules = []struct{ name, config string }{
	{"ip_set", "CONFIG_IP_SET"},
	{"ip_set_hash_ip", "CONFIG_IP_SET_HASH_IP"},
	{"ip_set_hash_net", "CONFIG_IP_SET_HASH_NET"},
	{"xt_set", "CONFIG_NETFILTER_XT_SET"},
	{"nf_conntrack", "CONFIG_NF_CONNTRACK"},
	{"nf_conntrack_netlink", "CONFIG_NF_CT_NETLINK"},
}

// doctorNFLOGModules are what drop mode's visibility needs (the NFLOG copy
// before each DROP, rate-limited in the kernel): without xt_NFLOG the
// firewall does not come up in enforce mode with firewall.nflog_group set.
var doctorNFLOGModules = []struct{ name, config string }{
	{"nfnetlink_log", "CONFIG_NETFILTER_NETLINK_LOG"},
	{"xt_NFLOG", "CONFIG_NETFILTER_XT_TARGET_NFLOG"},
	{"xt_limit", "CONFIG_NETFILTER_XT_MATCH_LIMIT"},
}

// neededModules are the kernel modules the configured firewall uses.
func (d *doctor) neededModules() []struct{ name, config string } {
	mods := doctorModules
	if d.cfg.Firewall.Mode == "enforce" && d.cfg.Firewall.NFLogGroup != 0 {
		mods = append(slices.Clip(mods), doctorNFLOGModules...)
	}
	return mods
}

const doctorFixModules = "install the kernel's extra modules (Debian/Ubuntu: apt-get install linux-modules-extra-$(uname -r)) or use a kernel built with "

func (d *doctor) checkModule(ctx context.Context, mod, symbol string) Result {
	name := "module " + mod
	if d.cfg.Firewall.Backend == "dry-run" {
		return checkSkip(name, "firewall.backend = dry-run")
	}
	if data, err := os.ReadFile(d.env.ProcModules); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == mod {
				return checkPass(name, "loaded")
			}
		}
	}
	if st, err := os.Stat(filepath.Join(d.env.SysModule, mod)); err == nil && st.IsDir() {
		return checkPass(name, "present in %s (built in or loaded)", d.env.SysModule)
	}
	value, src := d.kernelConfig(symbol)
	switch value {
	case "y":
		return checkPass(name, "built into the kernel (%s=y in %s)", symbol, src)
	case "n":
		return checkFail(name, doctorFixModules+symbol, "the kernel was built without it (%s is not set in %s)", symbol, src)
	}
	// A module (=m) or no kernel config to read: ask modprobe.
	if _, err := d.env.LookPath("modprobe"); err != nil {
		return checkWarn(name, "modprobe "+mod+" on the host (a container needs the host to load it)",
			"not loaded, and no modprobe here to tell whether it can be")
	}
	out, err := d.env.Run(ctx, "modprobe", "-n", "-q", mod)
	if err != nil {
		msg := strings.TrimSpace(out)
		if msg == "" {
			msg = "modprobe -n: " + err.Error()
		}
		return checkFail(name, doctorFixModules+symbol, "not loaded and not loadable: %s", msg)
	}
	return checkPass(name, "not loaded yet, loadable (the kernel loads it on first use)")
}

// kernelConfig returns "y", "m", "n" (explicitly not set) or "" (unknown)
// for a CONFIG_ symbol, from the first readable kernel config.
func (d *doctor) kernelConfig(symbol string) (value, source string) {
	for _, path := range d.env.KernelConfigs {
		text, err := doctorReadMaybeGzip(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, symbol+"="); ok {
				return strings.Trim(v, "\""), path
			}
			if line == "# "+symbol+" is not set" {
				return "n", path
			}
		}
		return "n", path
	}
	return "", ""
}

func doctorReadMaybeGzip(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", err
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(io.LimitReader(r, 16<<20))
	return string(b), err
}

// checkFirewall reads what sipsentry has in the kernel now: whether its
// chain and sets are up, whether the ban set is nearly full, and whether a
// country drop is enforced with an empty allowed-country set (a lock-out).
func (d *doctor) checkFirewall(ctx context.Context) Result {
	const name = "firewall"
	fw := d.cfg.Firewall
	if fw.Backend == "dry-run" {
		return checkSkip(name, "firewall.backend = dry-run")
	}
	st, err := d.env.FirewallStatus(ctx, fw)
	if err != nil {
		return checkWarn(name, "see the CAP_NET_ADMIN, iptables, ipset and module checks", "cannot read the kernel's state: %v", err)
	}
	if !st.Up {
		return checkWarn(name, "systemctl start sipsentry (the daemon puts the chain and sets up and restores the bans), or: sipsentry firewall up",
			"chain %s and its sets are not (all) in the kernel: nothing is protected by sipsentry now", fw.Chain)
	}
	var sizes []string
	var full []string
	ccEntries := 0
	for _, si := range st.Sets {
		sizes = append(sizes, fmt.Sprintf("%s/%s %d", si.Set, si.Family, si.Entries))
		if si.Set == firewall.SetAllowCountry {
			ccEntries += si.Entries
		}
		if si.Set == firewall.SetBan && si.MaxElem > 0 && si.Entries*10 >= si.MaxElem*9 {
			full = append(full, fmt.Sprintf("%s/%s holds %d of %d", si.Set, si.Family, si.Entries, si.MaxElem))
		}
	}
	if fw.Mode == "enforce" && d.cfg.Engine.GeoMode == "drop" && len(d.cfg.Geo.AllowCountries) > 0 && ccEntries == 0 {
		return checkFail(name, "sipsentry lists update, then systemctl reload sipsentry; until then set firewall.mode = \"monitor\"",
			"enforcing a country drop, but the allowed-country set is empty: only firewall.allow and learned push servers get in")
	}
	if len(full) > 0 {
		return checkWarn(name, "raise firewall.ban_maxelem (new bans are refused when the set is full)", "ban set nearly full: %s", strings.Join(full, ", "))
	}
	return checkPass(name, "up in %s mode, %d rules; %s", fw.Mode, len(st.Rules), strings.Join(sizes, ", "))
}

// ---- files ----

func (d *doctor) checkStateDir() Result {
	const name = "state dir"
	dir := d.cfg.StateDir
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return checkWarn(name, "systemd creates it from StateDirectory=sipsentry; without systemd: install -d -m 0750 "+dir,
			"%s does not exist yet", dir)
	}
	if err != nil {
		return checkFail(name, "check the path and its parents' permissions", "%v", err)
	}
	if !st.IsDir() {
		return checkFail(name, "set state_dir to a directory", "%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return checkFail(name, "chown the directory to the user running sipsentry, or run as root", "%s is not writable: %v", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return checkPass(name, "%s exists and is writable", dir)
}

// checkLists judges the allowed countries' lists as the daemon will load
// them (geo.Open on the download cache or lists_dir): a list missing or
// unusable, or not confirmed current (downloaded, 304 Not Modified, or for
// lists_dir the file's mtime) within 2 × geo.refresh.
func (d *doctor) checkLists() []Result {
	const name = "country lists"
	g := d.cfg.Geo
	if len(g.AllowCountries) == 0 {
		return []Result{checkSkip(name, "geo.allow_countries is empty: no list to keep")}
	}
	refresh := g.Refresh.D()
	if refresh <= 0 {
		refresh = 24 * time.Hour
	}
	maxAge := 2 * refresh
	where, fix := filepath.Join(d.cfg.StateDir, "lists"), "sipsentry lists update (the daemon refreshes every geo.refresh; its log says why a download was rejected)"
	if g.ListsDir != "" {
		where, fix = g.ListsDir, "put fresh <cc>-ipv4.txt and <cc>-ipv6.txt files into "+g.ListsDir+" (sipsentry does not download into lists_dir)"
	}
	// The databases are judged by their own checks; open the lists only.
	gc := g
	gc.MMDB, gc.ASNMMDB = "", ""
	logged := &doctorLog{}
	gdb, err := geo.Open(geoconf.Options(gc, d.cfg.StateDir), slog.New(logged))
	if err != nil {
		return []Result{checkFail(name, "correct the setting named in the message", "%v", err)}
	}
	ages := gdb.ListAges()
	var missing, stale []string
	oldest := time.Duration(0)
	for _, cc := range g.AllowCountries {
		for _, fam := range []string{"ipv4", "ipv6"} {
			list := strings.ToLower(cc) + "-" + fam
			age, ok := ages[list]
			switch {
			case !ok:
				missing = append(missing, list)
			case age > maxAge:
				stale = append(stale, fmt.Sprintf("%s (%s)", list, doctorAge(age)))
			}
			if ok && age > oldest {
				oldest = age
			}
		}
	}
	if len(missing) > 0 {
		detail := fmt.Sprintf("no usable list for %s in %s", strings.Join(missing, ", "), where)
		if len(logged.msgs) > 0 {
			detail += ": " + strings.Join(logged.msgs, "; ")
		}
		// Enforcing a country drop without the list locks those phones out.
		if d.cfg.Firewall.Mode == "enforce" && d.cfg.Engine.GeoMode == "drop" {
			return []Result{checkFail(name, fix, "%s; with firewall.mode = \"enforce\" and geo_mode = \"drop\" that country's phones are dropped", detail)}
		}
		return []Result{checkWarn(name, fix, "%s", detail)}
	}
	// A list refused by its checks (empty, HTML, shrunk, churned, …) runs
	// on its last good copy: usable, but the admin must look at the source.
	if probs := gdb.Health(); len(probs) > 0 {
		var lines []string
		for _, p := range probs {
			lines = append(lines, p.String())
		}
		return []Result{checkWarn(name, "fix the list's source, or take a deliberate change with `sipsentry lists accept FILE`",
			"%d list(s) refused, the last good copy stays in use: %s", len(probs), strings.Join(lines, "; "))}
	}
	if len(stale) > 0 {
		return []Result{checkWarn(name, fix, "%d of %d lists not confirmed current within %s (2 × geo.refresh): %s",
			len(stale), 2*len(g.AllowCountries), doctorAge(maxAge), strings.Join(stale, ", "))}
	}
	return []Result{checkPass(name, "%d lists in %s, oldest confirmed %s ago (limit %s)", 2*len(g.AllowCountries), where, doctorAge(oldest), doctorAge(maxAge))}
}

// doctorLog keeps the warnings geo.Open logs (why a list was not loaded).
type doctorLog struct{ msgs []string }

func (l *doctorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *doctorLog) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *doctorLog) WithGroup(string) slog.Handler                 { return l }
func (l *doctorLog) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "list" || a.Key == "err" {
			msg += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	l.msgs = append(l.msgs, msg)
	return nil
}

// doctorMMDBMaxAge: country databases drift by a few percent a month.
const doctorMMDBMaxAge = 60 * 24 * time.Hour

func (d *doctor) checkMMDB(key, path string) Result {
	const fixDownload = "download a current country mmdb (DB-IP lite, CC BY 4.0: https://db-ip.com/db/lite.php, or MaxMind GeoLite2 with geoipupdate)"
	if path == "" {
		if key == "geo.asn_mmdb" {
			return checkSkip(key, "not set: the report's ASN/org columns stay empty")
		}
		return checkWarn(key, fixDownload+" and set geo.mmdb", "not set: the report's mmdb country column shows \"?\"")
	}
	st, err := os.Stat(path)
	if err != nil {
		return checkWarn(key, fixDownload, "%v: the report's mmdb column shows \"?\"", err)
	}
	db, err := maxminddb.Open(path)
	if err != nil {
		return checkFail(key, "replace "+path+" with a real MaxMind DB file", "%s is not a MaxMind DB: %v", path, err)
	}
	// Let geo judge the schema exactly as the daemon will (a country DB in
	// the ASN slot, or the reverse, is an error at start).
	probe := config.Geo{MMDB: path}
	if key == "geo.asn_mmdb" {
		probe = config.Geo{ASNMMDB: path}
	}
	if _, err := geo.Open(geoconf.Options(probe, d.cfg.StateDir), slog.New(slog.DiscardHandler)); err != nil {
		db.Close()
		return checkFail(key, "point "+key+" at the right kind of database (country: GeoIP2/GeoLite2-Country or DB-IP/iptoasn country; ASN: GeoLite2-ASN)", "%v", err)
	}
	built := time.Unix(int64(db.Metadata.BuildEpoch), 0)
	dbType := db.Metadata.DatabaseType
	db.Close()
	if db.Metadata.BuildEpoch == 0 {
		built = st.ModTime()
	}
	age := d.env.Now().Sub(built)
	if age > doctorMMDBMaxAge {
		return checkWarn(key, fixDownload, "%s (%s) was built %s, %s ago (limit %s)", path, dbType, built.UTC().Format("2006-01-02"), doctorAge(age), doctorAge(doctorMMDBMaxAge))
	}
	return checkPass(key, "%s (%s) built %s, %s ago", path, dbType, built.UTC().Format("2006-01-02"), doctorAge(age))
}

// doctorAge prints an age in days when it is long, else as a duration.
func doctorAge(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}
