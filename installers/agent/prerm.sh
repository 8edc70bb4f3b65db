#!/bin/sh
# updateagent package: before removal (deb prerm "remove"; rpm %preun with
# $1 = 0). An upgrade leaves the agent running: the postinst restarts it on
# the new binary. Never fails the removal.
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl disable --now updateagent.service >/dev/null 2>&1 || true
fi
# A service `updateagent install` wrote (a SysV init script, or a unit in
# /etc/systemd/system) is not the package's file: stop and remove it.
if [ -e /etc/init.d/updateagent ] || [ -e /etc/systemd/system/updateagent.service ]; then
	/usr/bin/updateagent uninstall || true
fi
# The runlevel links `updateagent install` made beside its SysV script
# (kardianos/service removes only the script).
for link in /etc/rc[0-6S].d/[SK][0-9][0-9]updateagent; do
	[ -L "$link" ] && [ "$(readlink "$link")" = /etc/init.d/updateagent ] && rm -f "$link"
done
exit 0
