#!/bin/sh
# sipsentry postrm: purge removes the state database and list cache.
set -e
case "$1" in
purge)
	rm -rf /var/lib/sipsentry
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
