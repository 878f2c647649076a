package daemon

import (
	"log/slog"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/config"
)

// AMIClientConfig builds the AMI client settings from [ami], for the daemon
// and every command that talks to AMI (`ami tail`), so they log in alike.
// The secret is passed in, read once by the caller. OnConnect and OnMessage
// are left to the caller. A bad TLS setting matches ErrConfig.
func AMIClientConfig(c *config.Config, secret string, log *slog.Logger) (ami.ClientConfig, error) {
	cc := ami.ClientConfig{
		Address: c.AMI.Address, Username: c.AMI.Username, Secret: secret,
		MD5: c.AMI.Auth == "md5", Events: "security,system",
		PingInterval: c.AMI.PingInterval.D(), Timeout: c.AMI.Timeout.D(), ReconnectMax: c.AMI.ReconnectMax.D(),
		Logger: log,
	}
	if c.AMI.TLS {
		tc, err := ami.TLSConfig(c.AMI.TLSCA, c.AMI.TLSServerName)
		if err != nil {
			return cc, configError{err}
		}
		cc.TLS = tc
	}
	return cc, nil
}
