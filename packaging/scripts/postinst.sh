#!/bin/sh
# sipsentry postinst: make systemd see the unit. It never enables or starts
# the service: enforcing (dropping packets) must be the admin's decision,
# after the config and the AMI secret are in place.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
cat <<'MSG'
sipsentry is installed but not started. Next:
  1. edit /etc/sipsentry/sipsentry.toml (monitor mode: nothing is dropped)
  2. put the AMI secret in /etc/sipsentry/ami.secret (chmod 600)
  3. sipsentry config check && sipsentry doctor
  4. systemctl enable --now sipsentry
MSG
exit 0
