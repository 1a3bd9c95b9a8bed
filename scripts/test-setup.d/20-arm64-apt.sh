#!/bin/sh
# arm64 boards (generic-aarch64, rpi4-64, rpi5-64) fetch arm64 .debs with `apt-get download
# NAME:arm64`: apt needs the foreign architecture and its package lists. The Raspberry Pi
# firmware blobs come from raspi-firmware in Debian's non-free-firmware component, which is
# added next to the configured Debian mirror (same URI and keyring). Idempotent.
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
changed=0
if [ "$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
    changed=1
fi
list=/etc/apt/sources.list.d/osbuild-non-free-firmware.sources
if [ ! -e "$list" ] && ! grep -rqs 'non-free-firmware' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The first Debian stanza's URI and keyring, with the main suite only.
    src=/etc/apt/sources.list.d/debian.sources
    if [ -r "$src" ]; then
        uri=$(awk '/^URIs:/ { print $2; exit }' "$src")
        key=$(awk '/^Signed-By:/ { print $2; exit }' "$src")
        suite=$(awk '/^Suites:/ { print $2; exit }' "$src")
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: non-free-firmware\nSigned-By: %s\n' "$uri" "$suite" "$key" | $SUDO tee "$list" >/dev/null
        changed=1
    else
        echo "arm64-apt: no $src; add Debian's non-free-firmware component by hand for raspi-firmware" >&2
    fi
fi
# Package lists for arm64 present? (apt-cache knows an arm64-only package)
if [ "$changed" = 1 ] || ! apt-cache show busybox-static:arm64 >/dev/null 2>&1 || ! apt-cache show raspi-firmware >/dev/null 2>&1; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi
echo "arm64-apt: arm64 and non-free-firmware package lists ready"
