package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/sipsentry/sipsentry/engine/failmem"
)

// GeoMode is the country policy (engine.geo_mode). It never decides whether
// anything is enforced: Options.Enforce does.
type GeoMode string

const (
	// GeoOff: countries are reported, not acted on.
	GeoOff GeoMode = "off"
	// GeoStrict: a source outside the allowed countries is banned at its
	// first counted failure.
	GeoStrict GeoMode = "strict"
	// GeoDrop: only allowed countries reach the ports (the firewall's last
	// rule); the engine's thresholds are those of GeoOff.
	GeoDrop GeoMode = "drop"
)

// Options are the engine's settings, made of netip/time values. The daemon's
// wiring translates the configuration file into them (internal/daemon); the
// engine never reads the file.
type Options struct {
	// Enforce puts bans into the kernel (firewall.mode = "enforce"); false
	// records them as would-ban decisions and logs them.
	Enforce bool
	// GeoMode is the country policy; "" means GeoOff.
	GeoMode GeoMode

	MaxFailures      int           // failures within FindTime that ban
	FindTime         time.Duration //
	SlowMaxFailures  int           // failures within SlowFindTime that ban; 0 off
	SlowFindTime     time.Duration //
	EnumAccounts     int           // distinct accounts tried that ban; 0 off
	BanTime          time.Duration // first offence
	EscalationFactor float64       // each further offence multiplies the ban time
	MaxBanTime       time.Duration // cap of escalation
	// BanMaxElem is the kernel ban set's capacity (firewall.ban_maxelem).
	BanMaxElem int
	// MaxSources bounds the source aggregates held in memory (the report's
	// per-source rows); 0: 200000. Evicting one never forgets a failure:
	// decisions read the failure memory, bounded by MaxTracked.
	MaxSources int
	// MaxTracked is how many addresses the failure memory (engine/failmem)
	// tracks; 0: 1,048,576 (≈ 60 bytes each for IPv4, 73 for IPv6).
	MaxTracked int
	// KnownFor: an address that authenticated successfully within it (or
	// is a static or learned allow) is known, and UDP failure events alone
	// ban it only past KnownMaxFailures (engine.known_for; 0: none is).
	KnownFor time.Duration
	// KnownMaxFailures is the failures in FindTime, over UDP included, that
	// ban a known address (engine.known_max_failures; 0: never).
	KnownMaxFailures int
	// EventRetention is how long the event log keeps rows; 0 keeps them
	// (bounded by a row cap).
	EventRetention time.Duration

	// StaticAllows are firewall.allow: never banned, always in the allow set.
	StaticAllows []netip.Prefix
	// ConfigFile names the file static allows come from, in the error that
	// refuses to Disallow one.
	ConfigFile string

	// AMIPeers are Asterisk's addresses (never banned); SetAMIPeer adds the
	// one the connection actually reached.
	AMIPeers []netip.Addr

	Push PushOptions
}

// PushOptions are the push-server learner's settings ([push]).
type PushOptions struct {
	// UserAgents: a foreign contact whose User-Agent matches one is learned.
	UserAgents []*regexp.Regexp
	// Domains: a foreign contact whose forward-confirmed PTR is in one of
	// these domains is learned.
	Domains []string
	// Hosts are resolved and put in the allow set at Start and every Reseed.
	Hosts []string
	// LearnTTL is how long a learned or seeded entry stays allowed.
	LearnTTL time.Duration
	// Reseed is how often Hosts are resolved again; 0: daily.
	Reseed time.Duration
	// Resolver is "host:port" of the DNS server; "" means /etc/resolv.conf's.
	Resolver string
}

// DefaultOptions are the shipped defaults (contrib/sipsentry.toml): monitor
// mode, geo policy off.
func DefaultOptions() Options {
	return Options{
		GeoMode: GeoOff, MaxFailures: 5, FindTime: 10 * time.Minute,
		SlowMaxFailures: 20, SlowFindTime: 24 * time.Hour, EnumAccounts: 3,
		BanTime: time.Hour, EscalationFactor: 4, MaxBanTime: 7 * 24 * time.Hour,
		BanMaxElem: 1 << 20, MaxSources: 50000, EventRetention: 30 * 24 * time.Hour,
		KnownFor: 7 * 24 * time.Hour, KnownMaxFailures: 50,
		Push: PushOptions{
			UserAgents: []*regexp.Regexp{regexp.MustCompile(`(?i)^Bria Push`), regexp.MustCompile(`(?i)^CounterPath Push`)},
			Domains:    []string{"softphone.com"},
			LearnTTL:   30 * 24 * time.Hour,
			Reseed:     24 * time.Hour,
		},
	}
}

// settings are Options as the engine uses them, with what is derived from
// them; immutable once stored (Reload swaps the pointer).
type settings struct {
	Options
	findTime, slowFindTime int64 // nanoseconds
	failures               failmem.Options
}

func newSettings(o Options) (*settings, error) {
	if o.MaxFailures < 1 {
		return nil, errors.New("engine: MaxFailures (engine.max_failures) must be at least 1")
	}
	switch o.GeoMode {
	case "":
		o.GeoMode = GeoOff
	case GeoOff, GeoStrict, GeoDrop:
	default:
		return nil, fmt.Errorf("engine: geo mode %q is not off, strict or drop", o.GeoMode)
	}
	if o.BanTime <= 0 {
		return nil, errors.New("engine: BanTime (engine.ban_time) must be positive")
	}
	if o.EscalationFactor < 1 {
		o.EscalationFactor = 1
	}
	if o.MaxSources <= 0 {
		o.MaxSources = 200000
	}
	if o.MaxBanTime < o.BanTime {
		o.MaxBanTime = o.BanTime
	}
	if o.BanMaxElem <= 0 {
		o.BanMaxElem = 1 << 20
	}
	static := make([]netip.Prefix, 0, len(o.StaticAllows))
	for _, p := range o.StaticAllows {
		if p.IsValid() {
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			static = append(static, p.Masked())
		}
	}
	o.StaticAllows = static
	fo := failmem.DefaultOptions()
	fo.MaxFailures, fo.FindTime = o.MaxFailures, o.FindTime
	fo.SlowMaxFailures, fo.SlowFindTime = o.SlowMaxFailures, o.SlowFindTime
	fo.EnumAccounts = o.EnumAccounts
	fo.KnownFor, fo.KnownMaxFailures = o.KnownFor, o.KnownMaxFailures
	if o.MaxTracked > 0 {
		fo.MaxAddrs = o.MaxTracked
	}
	if err := fo.Check(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return &settings{
		Options:      o,
		findTime:     int64(o.FindTime),
		slowFindTime: int64(o.SlowFindTime),
		failures:     fo,
	}, nil
}
