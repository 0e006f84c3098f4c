#!/bin/sh
# AWS-Install-Application: install-packages.sh "PKG1 PKG2 …" with the system package manager.
set -e
# shellcheck disable=SC2086 # the list is space-separated on purpose
if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y $1
elif command -v dnf >/dev/null 2>&1; then
    dnf install -y $1
elif command -v yum >/dev/null 2>&1; then
    yum install -y $1
else
    echo "no supported package manager (apt-get, dnf, yum)" >&2
    exit 1
fi
