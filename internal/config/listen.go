package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
)

// checkListen judges metrics.listen as the daemon's listener will (so that
// `config check` refuses what `run` refuses): "", a literal loopback
// address with a port, or unix:/absolute/path. A name, even localhost, is
// refused: it is resolved through /etc/hosts, which may point elsewhere.
// The status page names attackers and accounts: never off loopback.
func checkListen(v string) string {
	if v == "" {
		return ""
	}
	if path, ok := strings.CutPrefix(v, "unix:"); ok {
		if !filepath.IsAbs(path) {
			return fmt.Sprintf("%q: want an absolute path after unix: (e.g. \"unix:/run/sipsentry/metrics.sock\")", v)
		}
		return ""
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Sprintf("%q is not host:port: write e.g. \"127.0.0.1:9468\", or \"\" to turn the listener off (or unix:/path)", v)
	}
	a, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return fmt.Sprintf("%q names a host; write a literal loopback address instead, e.g. \"127.0.0.1:%s\" (a name is resolved through /etc/hosts, which may point elsewhere)", v, port)
	case !a.Unmap().IsLoopback():
		return fmt.Sprintf("%q is not a loopback address: use 127.0.0.1 or [::1] and a reverse proxy to expose it", v)
	}
	return ""
}
