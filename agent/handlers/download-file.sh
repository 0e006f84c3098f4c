#!/bin/sh
# AWS-Download-File: download-file.sh URL PATH — fetch URL to PATH (resuming a partial PATH).
set -e
[ "$#" -eq 2 ] || { echo "usage: download-file.sh URL PATH" >&2; exit 2; }
mkdir -p "$(dirname "$2")"
if command -v curl >/dev/null 2>&1; then
    exec curl --silent --show-error --fail --location --continue-at - --output "$2" "$1"
fi
exec wget --quiet --continue --output-document "$2" "$1"
