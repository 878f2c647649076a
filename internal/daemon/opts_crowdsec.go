package daemon

import (
	"fmt"

	"github.com/sipsentry/sipsentry/crowdsec"
	"github.com/sipsentry/sipsentry/internal/config"
)

// CrowdsecClient builds the LAPI client from the [crowdsec] table, its
// credential files read by config.CrowdsecCredentials (the same check
// config check runs). With crowdsec.url empty the machine credentials' url
// line is used.
func CrowdsecClient(c *config.Config, version string) (*crowdsec.Client, error) {
	mc, key, err := c.CrowdsecCredentials()
	if err != nil {
		return nil, err
	}
	url := c.Crowdsec.URL
	if url == "" {
		url = mc.URL
	}
	cl, err := crowdsec.NewClient(url, mc, key, c.Crowdsec.Timeout.D())
	if err != nil {
		return nil, fmt.Errorf("crowdsec.url: %w", err)
	}
	cl.SetVersion(version)
	return cl, nil
}
