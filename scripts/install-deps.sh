#!/bin/sh
# Installs what osbuild needs on Debian 12: build libraries, and the reference tools the
# tests use as oracles. Package lists live in scripts/apt-packages.d/*.txt (one file per
# area, one package per line, '#' comments) so each module declares its own needs.
# Only missing packages are installed; run as root or with sudo available.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pkgs=$(cat "$here"/apt-packages.d/*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "install-deps: all $(echo $pkgs | wc -w) packages present"
    exit 0
fi
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
