package daemon

import (
	"fmt"

	"github.com/sipsentry/sipsentry/crowdsec"
	"github.com/sipsentry/sipsentry/internal/config"
)

// CrowdsecClient builds the LAPI client from the [crowdsec] table: the one
// place its credential files are read (the daemon and doctor call it). Each
// file must be private (0600) before it is read. With crowdsec.url empty
// the machine credentials' url line is used.
func CrowdsecClient(c config.Crowdsec, version string) (*crowdsec.Client, error) {
	var mc crowdsec.MachineCredentials
	if c.MachineCredentialsFile != "" {
		if err := config.CheckPrivate(c.MachineCredentialsFile); err != nil {
			return nil, fmt.Errorf("crowdsec.machine_credentials_file: %w", err)
		}
		var err error
		if mc, err = crowdsec.ReadMachineCredentials(c.MachineCredentialsFile); err != nil {
			return nil, fmt.Errorf("crowdsec.machine_credentials_file: %w", err)
		}
	}
	var key string
	if c.BouncerKeyFile != "" {
		if err := config.CheckPrivate(c.BouncerKeyFile); err != nil {
			return nil, fmt.Errorf("crowdsec.bouncer_key_file: %w", err)
		}
		var err error
		if key, err = crowdsec.ReadAPIKey(c.BouncerKeyFile); err != nil {
			return nil, fmt.Errorf("crowdsec.bouncer_key_file: %w", err)
		}
	}
	url := c.URL
	if url == "" {
		url = mc.URL
	}
	cl, err := crowdsec.NewClient(url, mc, key, c.Timeout.D())
	if err != nil {
		return nil, fmt.Errorf("crowdsec.url: %w", err)
	}
	cl.SetVersion(version)
	return cl, nil
}
