#!/bin/sh
# AWS-Stop-Application: stop-services.sh "SERVICE1 SERVICE2 …" with systemd.
set -e
# shellcheck disable=SC2086
exec systemctl stop $1
