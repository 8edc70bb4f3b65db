#!/bin/sh
# updateserver package: after removal. Even a purge keeps /var/lib/updateserver
# and the updateserver user: the data dir holds the TUF keys every agent
# trusts and the store; losing them by accident is worse than a stray
# directory. Never fails.
case "$1" in
purge)
	[ -d /var/lib/updateserver ] && echo "updateserver: kept /var/lib/updateserver (TUF keys, the store): remove it yourself once it is backed up"
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
