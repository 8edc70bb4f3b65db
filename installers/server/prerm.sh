#!/bin/sh
# updateserver package: before removal (deb "remove", rpm $1 = 0). An
# upgrade leaves it running; the postinst restarts it. Never fails.
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl disable --now updateserver.service >/dev/null 2>&1 || true
fi
exit 0
