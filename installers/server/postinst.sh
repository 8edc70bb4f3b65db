#!/bin/sh
# updateserver package: after install or upgrade (deb postinst "configure",
# old version in $2 on an upgrade; rpm %post, $1 = 1 first install, 2+
# upgrade). Creates the updateserver user, which owns the data dir. Works
# with and without systemd and never fails the install.
case "$1" in
configure) [ -n "$2" ] && upgrade=1 || upgrade=0 ;;
1) upgrade=0 ;;
[0-9]*) upgrade=1 ;;
*) exit 0 ;;
esac

DATA=/var/lib/updateserver
if ! getent passwd updateserver >/dev/null 2>&1; then
	nologin=$(command -v nologin || echo /bin/false)
	useradd --system --user-group --home-dir "$DATA" --no-create-home --shell "$nologin" updateserver ||
		echo "updateserver: could not create the user updateserver: create it, then chown updateserver: $DATA" >&2
fi
mkdir -p "$DATA" && chmod 0700 "$DATA"
chown updateserver:updateserver "$DATA" 2>/dev/null || true

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ "$upgrade" = 1 ]; then
		systemctl try-restart updateserver.service || echo "updateserver: the service did not restart: see journalctl -u updateserver" >&2
	else
		# First start: initializes the data dir (store, TUF keys,
		# admin.token), listening on 127.0.0.1:8080 only.
		systemctl enable --now updateserver.service || echo "updateserver: the service did not start: see journalctl -u updateserver" >&2
	fi
else
	echo "updateserver: no systemd here: run the server under your service manager as user updateserver:"
	echo "  updateserver serve --data $DATA"
fi
exit 0
