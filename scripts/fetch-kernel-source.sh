#!/bin/sh
# Installs Debian's linux-source-6.1 and unpacks it for the Kconfig tests and benchmark.
#   scripts/fetch-kernel-source.sh            -> $OSBUILD_KSRC or /var/cache/osbuild/linux-6.1
# Idempotent: a stamp file names the tarball it was unpacked from; a finished tree is
# reused. The tree is unpacked into a temp directory and renamed into place.
set -eu
dest=${OSBUILD_KSRC:-/var/cache/osbuild/linux-6.1}
tarball=/usr/src/linux-source-6.1.tar.xz
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if [ ! -f "$tarball" ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        linux-source-6.1 flex bison bc make gcc
fi
stamp="$dest/.osbuild-unpacked"
want=$(stat -c '%s %Y' "$tarball")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dest/Kconfig" ]; then
    # An in-tree kconfig run leaves these behind, and then every `make O=...` refuses
    # the tree ("source tree is not clean"): remove them.
    rm -rf "$dest/.config" "$dest/include/config" "$dest/include/generated" "$dest"/arch/*/include/generated
    echo "fetch-kernel-source: $dest is ready"
    exit 0
fi
parent=$(dirname "$dest")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.linux-unpack-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xJf "$tarball" -C "$tmp" --strip-components=1
echo "$want" > "$tmp/.osbuild-unpacked"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "fetch-kernel-source: unpacked $tarball into $dest"
