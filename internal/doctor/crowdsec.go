package doctor

import (
	"context"
	"errors"
	"time"

	"github.com/sipsentry/sipsentry/crowdsec"
	"github.com/sipsentry/sipsentry/internal/daemon"
)

// maxLAPISkew: LAPI decisions carry durations, alerts carry timestamps; a
// clock this far off makes alerts land in the wrong place of the LAPI's
// history and confuses whoever reads them.
const maxLAPISkew = 30 * time.Second

const doctorFixMachine = "on the LAPI host: cscli machines add NAME -f FILE, copy FILE here (mode 0600) and set crowdsec.machine_credentials_file"
const doctorFixBouncer = "on the LAPI host: cscli bouncers add NAME -o raw > FILE, copy FILE here (mode 0600) and set crowdsec.bouncer_key_file"

// checkCrowdsec checks the Local API when [crowdsec] is enabled: reachable
// (with the clock skew against its Date header), the machine credentials
// (a login) and the bouncer key (a live query that leaves the stream alone).
func (d *doctor) checkCrowdsec(ctx context.Context) []Result {
	cs := d.cfg.Crowdsec
	if !cs.Enabled {
		return []Result{checkSkip("crowdsec", "crowdsec.enabled = false: decisions are not shared")}
	}
	c, err := daemon.CrowdsecClient(d.cfg, "doctor")
	if err != nil {
		return []Result{checkFail("crowdsec", "fix the file named, or set crowdsec.enabled = false", "%v", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rs []Result
	lapiTime, err := c.Health(ctx)
	switch {
	case err != nil:
		return append(rs, checkFail("crowdsec LAPI", "start the LAPI (systemctl start crowdsec on its host) or fix crowdsec.url", "%v", err))
	case lapiTime.IsZero():
		rs = append(rs, checkPass("crowdsec LAPI", "reachable (it sent no Date header: clock skew not checked)"))
	default:
		skew := time.Since(lapiTime).Round(time.Second)
		if skew < 0 {
			skew = -skew
		}
		if skew > maxLAPISkew {
			rs = append(rs, checkWarn("crowdsec LAPI", "synchronise both clocks (systemd-timesyncd or chrony)", "reachable, but its clock is %s off this host's", skew))
		} else {
			rs = append(rs, checkPass("crowdsec LAPI", "reachable, clock skew %s", skew))
		}
	}
	if cs.MachineCredentialsFile == "" {
		rs = append(rs, checkSkip("crowdsec machine", "no crowdsec.machine_credentials_file: local bans are not published"))
	} else if err := c.Login(ctx); err != nil {
		fix := doctorFixMachine
		if !errors.Is(err, crowdsec.ErrUnauthorized) {
			fix = "check the LAPI's log; " + fix
		}
		rs = append(rs, checkFail("crowdsec machine", fix, "login refused: %v", err))
	} else {
		rs = append(rs, checkPass("crowdsec machine", "logged in: local bans are published as alerts"))
	}
	if cs.BouncerKeyFile == "" {
		rs = append(rs, checkSkip("crowdsec bouncer", "no crowdsec.bouncer_key_file: the LAPI's decisions are not applied"))
	} else if err := c.CheckBouncer(ctx); err != nil {
		rs = append(rs, checkFail("crowdsec bouncer", doctorFixBouncer, "API key refused: %v", err))
	} else {
		rs = append(rs, checkPass("crowdsec bouncer", "API key accepted: the LAPI's decisions are applied"))
	}
	return rs
}
