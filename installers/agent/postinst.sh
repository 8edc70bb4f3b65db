#!/bin/sh
# updateagent package: after install or upgrade (deb postinst "configure",
# with the old version in $2 on an upgrade; rpm %post, $1 = 1 on a first
# install, 2 or more on an upgrade). Works with and without systemd, and
# never fails the install: at worst it says what to do.
#
# The agent is started only once /etc/updateagent/agent.toml passes
# `updateagent check-config`: a fresh install ships a config with
# placeholders, and the agent stays stopped until client IT fills it in.
CONFIG=/etc/updateagent/agent.toml
BIN=/usr/bin/updateagent

case "$1" in
configure) [ -n "$2" ] && upgrade=1 || upgrade=0 ;;
1) upgrade=0 ;;
[0-9]*) upgrade=1 ;;
*) exit 0 ;; # abort-upgrade, abort-remove, ...: nothing was changed
esac

# The agent's journal and credential: root only.
mkdir -p /var/lib/updateagent && chmod 0700 /var/lib/updateagent

configured() { "$BIN" check-config --config "$CONFIG" >/dev/null 2>&1; }
todo() {
	echo "updateagent: fill in $CONFIG (every key is explained in it), check it with"
	echo "  updateagent check-config --config $CONFIG"
	echo "then start the agent with: $1"
}

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if ! configured; then
		todo "systemctl enable --now updateagent"
	elif [ "$upgrade" = 1 ]; then
		# Restart only if it runs: an agent client IT stopped stays stopped.
		systemctl try-restart updateagent.service || echo "updateagent: the service did not restart: see journalctl -u updateagent" >&2
	else
		systemctl enable --now updateagent.service || echo "updateagent: the service did not start: see journalctl -u updateagent" >&2
	fi
elif [ -e /etc/init.d/updateagent ]; then
	# No systemd: the SysV init script `updateagent install` wrote. Restart
	# the agent on its new binary, if its config is still valid.
	if configured; then
		"$BIN" stop >/dev/null 2>&1 || true
		"$BIN" start || echo "updateagent: the service did not start: see /var/log/updateagent.err" >&2
	else
		echo "updateagent: $CONFIG does not pass check-config: the agent was not restarted" >&2
		"$BIN" check-config --config "$CONFIG" >&2 || true
	fi
else
	# No systemd and no service yet: `updateagent install` writes an init
	# script for the system's service manager (SysV, upstart, OpenRC).
	if configured; then
		echo "updateagent: $CONFIG is valid: start the agent with: updateagent install --config $CONFIG"
	else
		todo "updateagent install --config $CONFIG"
	fi
fi
exit 0
