package config

import (
	"fmt"
	"net/url"

	"github.com/sipsentry/sipsentry/crowdsec"
)

// Crowdsec is the [crowdsec] table: sharing decisions through a CrowdSec
// Local API. Off by default.
type Crowdsec struct {
	Enabled bool `toml:"enabled"`
	// URL of the LAPI; empty takes the url line of the machine credentials.
	URL string `toml:"url"`
	// MachineCredentialsFile is what `cscli machines add NAME -f FILE`
	// writes (url, login, password), mode 0600; empty: publish nothing.
	MachineCredentialsFile string `toml:"machine_credentials_file"`
	// BouncerKeyFile holds `cscli bouncers add NAME -o raw`'s key, mode
	// 0600; empty: consume nothing.
	BouncerKeyFile string   `toml:"bouncer_key_file"`
	PollInterval   Duration `toml:"poll_interval"`
	// MaxRangePrefixV4/V6: wider remote ranges are refused.
	MaxRangePrefixV4 int      `toml:"max_range_prefix_v4"`
	MaxRangePrefixV6 int      `toml:"max_range_prefix_v6"`
	Timeout          Duration `toml:"timeout"`
}

func defaultCrowdsec() Crowdsec {
	return Crowdsec{PollInterval: Duration(10e9), MaxRangePrefixV4: 16, MaxRangePrefixV6: 32, Timeout: Duration(10e9)}
}

// validateCrowdsec checks the [crowdsec] table; bad makes a file:line error.
func (c *Config) validateCrowdsec(bad func(key, format string, args ...any)) {
	cs := c.Crowdsec
	if !cs.Enabled {
		return
	}
	if cs.MachineCredentialsFile == "" && cs.BouncerKeyFile == "" {
		bad("crowdsec.enabled", "needs machine_credentials_file (publish bans) or bouncer_key_file (apply the LAPI's decisions), or both")
	}
	if cs.URL != "" {
		if u, err := url.Parse(cs.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("crowdsec.url", "%q is not http(s)://host:port/ (e.g. \"http://127.0.0.1:8080/\")", cs.URL)
		}
	} else if cs.MachineCredentialsFile == "" {
		bad("crowdsec.url", "must be set when there is no machine_credentials_file to take it from")
	}
	if cs.PollInterval.D() < 1e9 {
		bad("crowdsec.poll_interval", "must be at least 1s")
	}
	if cs.MaxRangePrefixV4 < 8 || cs.MaxRangePrefixV4 > 32 {
		bad("crowdsec.max_range_prefix_v4", "must be between 8 and 32 (16 refuses anything wider than a /16)")
	}
	if cs.MaxRangePrefixV6 < 16 || cs.MaxRangePrefixV6 > 128 {
		bad("crowdsec.max_range_prefix_v6", "must be between 16 and 128")
	}
}

// CrowdsecCredentials reads the [crowdsec] credential files exactly as run
// uses them: each must be private (0600) and owned by root or the service
// user (another user's file would choose which LAPI is trusted and what it
// may ban), then parsed. Errors name the key. An unset file gives zero
// values.
func (c *Config) CrowdsecCredentials() (crowdsec.MachineCredentials, string, error) {
	cs := c.Crowdsec
	var mc crowdsec.MachineCredentials
	var key string
	check := func(setting, path string) error {
		if err := CheckPrivate(path); err != nil {
			return fmt.Errorf("crowdsec.%s: %w", setting, err)
		}
		if err := CheckOwner(path); err != nil {
			return fmt.Errorf("crowdsec.%s: %w", setting, err)
		}
		return nil
	}
	if cs.MachineCredentialsFile != "" {
		if err := check("machine_credentials_file", cs.MachineCredentialsFile); err != nil {
			return mc, key, err
		}
		var err error
		if mc, err = crowdsec.ReadMachineCredentials(cs.MachineCredentialsFile); err != nil {
			return mc, key, fmt.Errorf("crowdsec.machine_credentials_file: %w", err)
		}
	}
	if cs.BouncerKeyFile != "" {
		if err := check("bouncer_key_file", cs.BouncerKeyFile); err != nil {
			return mc, key, err
		}
		var err error
		if key, err = crowdsec.ReadAPIKey(cs.BouncerKeyFile); err != nil {
			return mc, key, fmt.Errorf("crowdsec.bouncer_key_file: %w", err)
		}
	}
	return mc, key, nil
}
