#!/bin/sh
# AWS-Restart-Application: restart-services.sh "SERVICE1 SERVICE2 …" with systemd.
set -e
# shellcheck disable=SC2086
exec systemctl restart $1
