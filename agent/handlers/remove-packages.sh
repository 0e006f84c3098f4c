#!/bin/sh
# AWS-Remove-Application: remove-packages.sh "PKG1 PKG2 …".
set -e
# shellcheck disable=SC2086
if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get remove -y $1
elif command -v dnf >/dev/null 2>&1; then
    dnf remove -y $1
elif command -v yum >/dev/null 2>&1; then
    yum remove -y $1
else
    echo "no supported package manager (apt-get, dnf, yum)" >&2
    exit 1
fi
