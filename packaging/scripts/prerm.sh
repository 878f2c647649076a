#!/bin/sh
# sipsentry prerm: on removal stop the service (its bans stay in the kernel
# until `sipsentry firewall down`, which this script runs while the binary
# is still there, so a removed package leaves no rules behind). An upgrade
# leaves the service and the firewall alone.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now sipsentry.service >/dev/null 2>&1 || true
	fi
	if command -v sipsentry >/dev/null 2>&1; then
		sipsentry firewall down --config /etc/sipsentry/sipsentry.toml >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
