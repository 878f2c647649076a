package daemon

import (
	"net"
	"net/netip"

	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/internal/config"
)

// EngineOptions translates the configuration into the engine's options:
// the one place where [engine], [push], firewall.mode, firewall.allow and
// the AMI peer become engine settings. The engine never reads the file.
func EngineOptions(cfg *config.Config) engine.Options {
	ec := cfg.Engine
	o := engine.Options{
		Enforce:          cfg.Firewall.Mode == "enforce",
		GeoMode:          engine.GeoMode(ec.GeoMode),
		MaxFailures:      ec.MaxFailures,
		FindTime:         ec.FindTime.D(),
		SlowMaxFailures:  ec.SlowMaxFailures,
		SlowFindTime:     ec.SlowFindTime.D(),
		EnumAccounts:     ec.EnumAccounts,
		BanTime:          ec.BanTime.D(),
		EscalationFactor: ec.EscalationFactor,
		MaxBanTime:       ec.MaxBanTime.D(),
		BanMaxElem:       cfg.Firewall.BanMaxElem,
		MaxSources:       ec.MaxSources,
		KnownFor:         ec.KnownFor.D(),
		KnownMaxFailures: ec.KnownMaxFailures,
		EventRetention:   ec.EventRetention.D(),
		ConfigFile:       cfg.Path,
		Push: engine.PushOptions{
			Domains:  append([]string(nil), cfg.Push.Domains...),
			Hosts:    append([]string(nil), cfg.Push.Hosts...),
			LearnTTL: cfg.Push.LearnTTL.D(),
			Reseed:   cfg.Push.Reseed.D(),
			Resolver: cfg.Push.Resolver,
		},
	}
	if o.GeoMode == "monitor" { // deprecated alias, already warned about by config
		o.GeoMode = engine.GeoOff
	}
	for _, a := range cfg.Firewall.Allow {
		o.StaticAllows = append(o.StaticAllows, a.Prefix.Masked())
	}
	for _, re := range cfg.Push.UserAgents {
		if re.Regexp != nil {
			o.Push.UserAgents = append(o.Push.UserAgents, re.Regexp)
		}
	}
	// The engine protects ami.address when it is an IP literal; Run resolves
	// a host name and adds its addresses with SetAMIPeer.
	if h, _, err := net.SplitHostPort(cfg.AMI.Address); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			o.AMIPeers = append(o.AMIPeers, a.Unmap())
		}
	}
	return o
}
