#!/bin/sh
# updateagent package: after removal (deb postrm "remove" or "purge"; rpm
# %postun, $1 = 0 on erase). Purge removes the config, the agent's data
# (its journal and credential) and its logs; the managed application's
# install_dir is the application's and stays. The copy of the previous
# agent binary that a self-update keeps beside /usr/bin/updateagent goes
# with the package. Never fails.
case "$1" in
remove|purge|0)
	rm -f /usr/bin/.updateagent.old /usr/bin/.updateagent.new
	;;
esac
case "$1" in
purge)
	rm -rf /etc/updateagent /var/lib/updateagent
	rm -f /var/log/updateagent.log /var/log/updateagent.err
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
