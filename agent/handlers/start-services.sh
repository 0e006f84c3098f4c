#!/bin/sh
# AWS-Start-Application: start-services.sh "SERVICE1 SERVICE2 …" with systemd.
set -e
# shellcheck disable=SC2086
exec systemctl start $1
