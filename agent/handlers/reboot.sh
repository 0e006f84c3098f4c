#!/bin/sh
# AWS-Reboot: reboot the device. The agent records the boot before running this and reports
# the job SUCCEEDED once it is back with a new boot id.
set -e
if command -v systemctl >/dev/null 2>&1; then
    exec systemctl reboot
fi
exec /sbin/reboot
