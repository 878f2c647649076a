// Package config reads sipsentry's one TOML file: defaults and validation in
// one place, unknown keys rejected, every error naming file:line and the key.
//
// It never logs or prints a secret; Secret() reads secret_file on demand.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// DefaultPath is where the daemon and every command look without --config.
const DefaultPath = "/etc/sipsentry/sipsentry.toml"

// Config is the whole file. Each table belongs to one package's concern.
type Config struct {
	// StateDir holds the state DB and the list cache.
	StateDir string `toml:"state_dir"`

	Log      Log      `toml:"log"`
	AMI      AMI      `toml:"ami"`
	ARI      ARI      `toml:"ari"`
	Geo      Geo      `toml:"geo"`
	Firewall Firewall `toml:"firewall"`
	Engine   Engine   `toml:"engine"`
	Push     Push     `toml:"push"`
	Metrics  Metrics  `toml:"metrics"`
	Control  Control  `toml:"control"`
	Crowdsec Crowdsec `toml:"crowdsec"`

	// Path is the file this was read from ("" for pure defaults).
	Path string `toml:"-"`
	// Warnings are accepted but deprecated settings (file:line: key: what to
	// write instead); the daemon logs them at start.
	Warnings []string `toml:"-"`
}

type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error
	Format string `toml:"format"` // auto | text | json
}

type AMI struct {
	Address       string   `toml:"address"`
	Username      string   `toml:"username"`
	Secret        string   `toml:"secret"`
	SecretFile    string   `toml:"secret_file"`
	Auth          string   `toml:"auth"` // md5 | plain
	TLS           bool     `toml:"tls"`
	TLSCA         string   `toml:"tls_ca"`
	TLSServerName string   `toml:"tls_server_name"`
	PingInterval  Duration `toml:"ping_interval"`
	Timeout       Duration `toml:"timeout"`
	ReconnectMax  Duration `toml:"reconnect_max"`
}

type ARI struct {
	// URL is empty when ARI is not used; AMI alone is a complete setup.
	URL          string `toml:"url"`
	WebsocketURL string `toml:"websocket_url"`
	Username     string `toml:"username"`
	Password     string `toml:"password"`
	PasswordFile string `toml:"password_file"`
	Application  string `toml:"application"`
	HangupOnBan  bool   `toml:"hangup_on_ban"`
}

type Geo struct {
	AllowCountries   []string `toml:"allow_countries"` // upper-cased ISO 3166-1 alpha-2
	MMDB             string   `toml:"mmdb"`
	ASNMMDB          string   `toml:"asn_mmdb"`
	ListURLv4        string   `toml:"list_url_v4"`
	ListURLv6        string   `toml:"list_url_v6"`
	ListsDir         string   `toml:"lists_dir"`
	Refresh          Duration `toml:"refresh"`
	MinEntries       int      `toml:"min_entries"`
	MaxShrink        float64  `toml:"max_shrink"`
	MaxChurn         float64  `toml:"max_churn"`
	DownloadTimeout  Duration `toml:"download_timeout"`
	MaxDownloadBytes int64    `toml:"max_download_bytes"`
}

type Firewall struct {
	Mode          string      `toml:"mode"`    // enforce | monitor
	Backend       string      `toml:"backend"` // iptables | dry-run
	Chain         string      `toml:"chain"`
	InputPosition int         `toml:"input_position"`
	UDPPorts      []PortRange `toml:"udp_ports"`
	TCPPorts      []PortRange `toml:"tcp_ports"`
	RTPPorts      []PortRange `toml:"rtp_ports"`
	BanMaxElem    int         `toml:"ban_maxelem"`
	Allow         []Prefix    `toml:"allow"`
	// NFLogGroup is the NFLOG group that receives a rate-limited copy of
	// what the ban and country rules drop (0 = no copy).
	NFLogGroup uint16 `toml:"nflog_group"`
	// VerifyInterval is how often the kernel's sets, chain and jumps are
	// compared with what the daemon holds and repaired (0 = never; a
	// reload verifies too).
	VerifyInterval Duration `toml:"verify_interval"`
	// GeoDrop is not a key: Parse sets it from engine.geo_mode == "drop".
	// The firewall's last rule drops what no set accepted only when it is
	// true (and mode is enforce); strict and monitor let those packets in.
	GeoDrop bool `toml:"-"`
}

type Engine struct {
	GeoMode          string   `toml:"geo_mode"` // off | strict | drop ("monitor": deprecated alias of off)
	MaxFailures      int      `toml:"max_failures"`
	FindTime         Duration `toml:"find_time"`
	BanTime          Duration `toml:"ban_time"`
	EscalationFactor float64  `toml:"escalation_factor"`
	MaxBanTime       Duration `toml:"max_ban_time"`
	SlowMaxFailures  int      `toml:"slow_max_failures"`
	SlowFindTime     Duration `toml:"slow_find_time"`
	EnumAccounts     int      `toml:"enum_accounts"`
	EventRetention   Duration `toml:"event_retention"`
	MaxSources       int      `toml:"max_sources"`
	// KnownFor / KnownMaxFailures: forged-source resistance (engine.Options).
	KnownFor         Duration `toml:"known_for"`
	KnownMaxFailures int      `toml:"known_max_failures"`
}

type Push struct {
	UserAgents []Regexp `toml:"user_agents"`
	Domains    []string `toml:"domains"`
	Hosts      []string `toml:"hosts"`
	LearnTTL   Duration `toml:"learn_ttl"`
	Reseed     Duration `toml:"reseed"`
	// Resolver is "host:port" of a DNS server; empty means the system's.
	Resolver string `toml:"resolver"`
	// Probation lets a dropped push candidate through this long (0 = never).
	Probation Duration `toml:"probation"`
	// MaxProbations bounds the probations granted per hour.
	MaxProbations int `toml:"max_probations"`
}

type Metrics struct {
	Listen string `toml:"listen"` // empty disables
	// Pprof serves Go's /debug/pprof/ on the same loopback listener: for
	// profiling the daemon under a flood, off by default.
	Pprof bool `toml:"pprof"`
}

// Control is the daemon's control socket (`sipsentry ban`, `bans`, ...).
type Control struct {
	// Socket is the unix socket's path (absolute).
	Socket string `toml:"socket"`
	// Group (a name or a numeric gid), when set, may read and act through
	// the socket besides root; the socket is then 0660 with that group.
	Group string `toml:"group"`
}

// Default returns the built-in configuration: monitor mode, nothing dropped.
func Default() *Config {
	return &Config{
		StateDir: "/var/lib/sipsentry",
		Log:      Log{Level: "info", Format: "auto"},
		AMI: AMI{
			Address: "127.0.0.1:5038", Username: "sipsentry", Auth: "md5",
			PingInterval: Duration(15e9), Timeout: Duration(10e9), ReconnectMax: Duration(30e9),
		},
		ARI: ARI{Application: "sipsentry", HangupOnBan: true},
		Geo: Geo{
			ListURLv4:        "https://raw.githubusercontent.com/ipverse/rir-ip/master/country/{cc}/ipv4-aggregated.txt",
			ListURLv6:        "https://raw.githubusercontent.com/ipverse/rir-ip/master/country/{cc}/ipv6-aggregated.txt",
			Refresh:          Duration(24 * 3600e9),
			MinEntries:       50,
			MaxShrink:        0.2,
			MaxChurn:         0.25,
			DownloadTimeout:  Duration(60e9),
			MaxDownloadBytes: 16 << 20,
		},
		Firewall: Firewall{
			Mode: "monitor", Backend: "iptables", Chain: "SIPSENTRY", InputPosition: 1,
			UDPPorts:       []PortRange{{5060, 5060}},
			TCPPorts:       []PortRange{{5060, 5061}},
			RTPPorts:       []PortRange{{10000, 20000}},
			BanMaxElem:     1 << 20,
			VerifyInterval: Duration(10 * time.Second),
			NFLogGroup:     5060,
		},
		Engine: Engine{
			GeoMode: "off", MaxFailures: 5, FindTime: Duration(600e9), BanTime: Duration(3600e9),
			EscalationFactor: 4, MaxBanTime: Duration(7 * 24 * 3600e9),
			SlowMaxFailures: 20, SlowFindTime: Duration(24 * 3600e9), EnumAccounts: 3,
			EventRetention: Duration(30 * 24 * 3600e9), MaxSources: 50000,
			KnownFor: Duration(7 * 24 * 3600e9), KnownMaxFailures: 50,
		},
		Push: Push{
			UserAgents: mustRegexps(`(?i)^Bria Push`, `(?i)^CounterPath Push`),
			Domains:    []string{"softphone.com"},
			Hosts: []string{
				"push.softphone.com", "push-as.softphone.com", "push-as3.softphone.com",
				"push-au.softphone.com", "push-au2.softphone.com", "push-eu.softphone.com",
				"push-eu2.softphone.com", "push-ue.softphone.com", "push-ue3.softphone.com",
				"push-uw.softphone.com", "push-uw3.softphone.com", "push-uc.softphone.com",
				"push-za.softphone.com", "push-jp.softphone.com",
			},
			LearnTTL: Duration(30 * 24 * 3600e9),
			Reseed:   Duration(24 * 3600e9),
			// One minute is enough for a push server's REGISTER retry
			// (RFC 3261 timer F: 32 s) to reach Asterisk.
			Probation:     Duration(60e9),
			MaxProbations: 10,
		},
		Metrics:  Metrics{Listen: "127.0.0.1:9468"},
		Control:  Control{Socket: "/run/sipsentry/control.sock"},
		Crowdsec: defaultCrowdsec(),
	}
}

func mustRegexps(ss ...string) []Regexp {
	out := make([]Regexp, len(ss))
	for i, s := range ss {
		if err := out[i].UnmarshalText([]byte(s)); err != nil {
			panic(err)
		}
	}
	return out
}

// Error is a config problem tied to a place in the file.
type Error struct {
	File string
	Line int    // 0 when the problem is not on one line
	Key  string // dotted key, e.g. "firewall.mode"
	Msg  string
	Err  error // the cause, e.g. ErrInsecure; may be nil
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrInsecure marks a file holding secrets that group or others can read.
var ErrInsecure = errors.New("config: file readable by group or others")

// Load reads path over the defaults. A missing file is an error: callers that
// can run on defaults use Default() instead.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config: %s does not exist: create it from contrib/sipsentry.toml or pass --config FILE", path)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	// Who may write the file is judged first: a file another user can
	// change is refused whatever it says.
	if err := CheckOwner(path); err != nil {
		return nil, err
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return c, checkFileMode(c, path, data)
}

// checkFileMode refuses a config file holding a secret inline that group
// or others can read.
func checkFileMode(c *Config, path string, data []byte) error {
	if c.AMI.Secret != "" || c.ARI.Password != "" {
		if err := CheckPrivate(path); err != nil {
			key := "ami.secret"
			if c.AMI.Secret == "" {
				key = "ari.password"
			}
			return &Error{File: path, Line: lineOf(data, key), Key: key, Msg: strings.TrimPrefix(err.Error(), ErrInsecure.Error()+": "), Err: err}
		}
	}
	return nil
}

// Parse decodes data (named path in errors) over the defaults and validates it.
func Parse(path string, data []byte) (*Config, error) {
	c := Default()
	c.Path = path
	// Every unknown key and wrongly typed value at once, in words; the
	// decoder below would stop at the first, in Go's terms.
	if errs := checkDocument(path, data); len(errs) > 0 {
		return nil, errs
	}
	// Lists given in the file replace the defaults rather than append to them.
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, decodeError(path, err)
	}
	c.Firewall.GeoDrop = c.Engine.GeoMode == "drop"
	if err := c.validate(data); err != nil {
		return nil, validated{c, err}
	}
	return c, nil
}

func decodeError(path string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		de := strict.Errors[0]
		line, _ := de.Position()
		return &Error{File: path, Line: line, Key: strings.Join(de.Key(), "."),
			Msg: "unknown key (see contrib/sipsentry.toml for every key)"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return &Error{File: path, Line: line, Key: strings.Join(de.Key(), "."), Msg: strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return &Error{File: path, Msg: err.Error()}
}

// validate checks values that no type can check alone. data is the file's
// text, used to find the line a key is on.
func (c *Config) validate(data []byte) error {
	var errs Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: c.Path, Line: lineOf(data, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, v string, allowed ...string) *Error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return &Error{File: c.Path, Line: lineOf(data, key), Key: key,
			Msg: fmt.Sprintf("%q is not one of %s", v, strings.Join(allowed, ", "))}
	}
	for _, chk := range []*Error{
		oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"),
		oneOf("log.format", c.Log.Format, "auto", "text", "json"),
		oneOf("ami.auth", c.AMI.Auth, "md5", "plain"),
		oneOf("firewall.mode", c.Firewall.Mode, "enforce", "monitor"),
		oneOf("firewall.backend", c.Firewall.Backend, "iptables", "dry-run"),
		oneOf("engine.geo_mode", c.Engine.GeoMode, "off", "strict", "drop", "monitor"),
	} {
		if chk != nil {
			errs = append(errs, chk)
		}
	}
	if c.Engine.GeoMode == "monitor" {
		// Before 2026-12 "monitor" also turned every ban off; firewall.mode
		// alone decides enforcement now, so the alias keeps only its
		// country meaning.
		c.Engine.GeoMode = "off"
		c.Warnings = append(c.Warnings, (&Error{File: c.Path, Line: lineOf(data, "engine.geo_mode"), Key: "engine.geo_mode",
			Msg: `"monitor" is deprecated: it now means "off" (countries reported, not acted on); whether bans are enforced is firewall.mode alone`}).Error())
	}
	for i, cc := range c.Geo.AllowCountries {
		up := strings.ToUpper(strings.TrimSpace(cc))
		if !isKnownCountry(up) {
			bad("geo.allow_countries", "unknown country code %q: want an ISO 3166-1 alpha-2 code such as \"JP\"", cc)
			continue
		}
		c.Geo.AllowCountries[i] = up
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.AMI.Address); err != nil {
		bad("ami.address", "%q is not host:port (e.g. \"127.0.0.1:5038\")", c.AMI.Address)
	}
	if c.AMI.Secret != "" && c.AMI.SecretFile != "" {
		bad("ami.secret_file", "set either secret or secret_file, not both")
	}
	if c.ARI.Password != "" && c.ARI.PasswordFile != "" {
		bad("ari.password_file", "set either password or password_file, not both")
	}
	for _, k := range []struct{ key, tmpl string }{{"geo.list_url_v4", c.Geo.ListURLv4}, {"geo.list_url_v6", c.Geo.ListURLv6}} {
		if c.Geo.ListsDir == "" && !strings.Contains(k.tmpl, "{cc}") {
			bad(k.key, "template %q has no {cc} placeholder for the country code", k.tmpl)
		}
	}
	if c.Geo.MinEntries < 0 {
		bad("geo.min_entries", "must be 0 or more")
	}
	if c.Geo.MaxShrink < 0 || c.Geo.MaxShrink > 1 {
		bad("geo.max_shrink", "must be a share between 0 and 1 (0.2 = 20%%)")
	}
	if c.Geo.MaxChurn < 0 || c.Geo.MaxChurn > 1 {
		bad("geo.max_churn", "must be a share between 0 and 1 (0.25 = 25%%)")
	}
	if c.Firewall.BanMaxElem < 1 {
		bad("firewall.ban_maxelem", "must be at least 1")
	}
	if c.Firewall.InputPosition < 1 {
		bad("firewall.input_position", "must be 1 or more")
	}
	if c.Firewall.Chain == "" || len(c.Firewall.Chain) > 28 || strings.ContainsAny(c.Firewall.Chain, " \t!") {
		bad("firewall.chain", "%q is not a valid chain name (1-28 characters, no spaces)", c.Firewall.Chain)
	}
	if !strings.HasPrefix(c.Control.Socket, "/") {
		bad("control.socket", "%q is not an absolute path (e.g. \"/run/sipsentry/control.sock\")", c.Control.Socket)
	}
	if c.Push.MaxProbations < 0 {
		bad("push.max_probations", "must be 0 or more (0 grants none)")
	}
	if c.Push.Probation.D() > time.Hour {
		bad("push.probation", "must be at most 1h: a probation lets an unknown foreign address reach Asterisk")
	}
	if c.Engine.MaxFailures < 1 {
		bad("engine.max_failures", "must be at least 1")
	}
	if d := c.Engine.FindTime.D(); d < 3*time.Second || d > 18*time.Hour {
		bad("engine.find_time", "must be between 3s and 18h (longer windows are slow_find_time's)")
	}
	if c.Engine.KnownFor.D() < 0 {
		bad("engine.known_for", "must not be negative (0: no address is known by a successful login)")
	}
	if c.Engine.KnownMaxFailures < 0 {
		bad("engine.known_max_failures", "must not be negative (0: UDP failures never ban a known address)")
	}
	if c.Engine.EscalationFactor < 1 {
		bad("engine.escalation_factor", "must be 1 or more")
	}
	if c.Engine.BanTime.D() <= 0 {
		bad("engine.ban_time", "must be positive")
	}
	c.validateCrowdsec(bad)
	// A daemon that drops everything but nothing is allowed locks the admin out.
	enforcing := c.Firewall.Mode == "enforce" && c.Engine.GeoMode == "drop"
	if enforcing && len(c.Geo.AllowCountries) == 0 && len(c.Firewall.Allow) == 0 {
		errs = append(errs, &Error{File: c.Path, Line: lineOf(data, "engine.geo_mode"), Key: "geo.allow_countries",
			Msg: "firewall.mode = \"enforce\" with geo_mode = \"drop\" but no allowed country and no firewall.allow entry would lock every phone out: add allow_countries or allow CIDRs, or use mode = \"monitor\""})
	}
	errs = append(errs, c.validateRun(data)...)
	return errs.sorted().orNil()
}

// lineOf finds the line of a dotted key's last element inside its table.
func lineOf(data []byte, dotted string) int {
	table, key := "", dotted
	if i := strings.LastIndexByte(dotted, '.'); i >= 0 {
		table, key = dotted[:i], dotted[i+1:]
	}
	cur := ""
	for n, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			cur = strings.TrimSpace(strings.Trim(t, "[]"))
			continue
		}
		if cur != table {
			continue
		}
		if k, _, ok := strings.Cut(t, "="); ok && strings.TrimSpace(k) == key {
			return n + 1
		}
	}
	return 0
}

// CheckPrivate refuses a file holding secrets that group or others can read.
func CheckPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s is mode %04o and holds a secret; run: chmod 600 %s",
			ErrInsecure, path, st.Mode().Perm(), path)
	}
	return nil
}

// ReadSecretFile reads a one-line secret file after checking its mode.
func ReadSecretFile(path string) (string, error) {
	if err := CheckPrivate(path); err != nil {
		return "", err
	}
	if err := CheckOwner(path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("config: reading secret: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("config: secret file %s is empty", path)
	}
	return s, nil
}

// AMISecret returns the AMI secret from secret or secret_file.
func (c *Config) AMISecret() (string, error) {
	if c.AMI.SecretFile != "" {
		return ReadSecretFile(c.AMI.SecretFile)
	}
	if c.AMI.Secret == "" {
		return "", fmt.Errorf("config: %s: [ami] has neither secret nor secret_file: set one (and chmod 600 the file)", c.Path)
	}
	return c.AMI.Secret, nil
}

// ARIPassword returns the ARI password from password or password_file.
func (c *Config) ARIPassword() (string, error) {
	if c.ARI.PasswordFile != "" {
		return ReadSecretFile(c.ARI.PasswordFile)
	}
	return c.ARI.Password, nil
}
