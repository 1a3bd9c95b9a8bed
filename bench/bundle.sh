#!/usr/bin/env bash
# bench/bundle.sh - `osbuild bundle create` vs `rauc bundle` on the same content dir
# (verity format, RSA-4096 key, ~160 MiB of images), in ONE hyperfine run.
# Prints `ratio osbuild/peer = X` (time) and the size ratio of the two bundles.
#
# Usage: bench/bundle.sh [WORKDIR]   (env: RUNS=5, ROOTFS_MB=128, FORMAT=verity|plain)
# osbuild writes the payload with its native SquashFS writer, rauc with mksquashfs.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bench-bundle.XXXXXX")}
runs=${RUNS:-5}
rootfs_mb=${ROOTFS_MB:-128}
format=${FORMAT:-verity}

for t in hyperfine rauc mksquashfs openssl python3; do
	command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/install-deps.sh)" >&2; exit 69; }
done

# Release build under the shared lock (2 cores shared by several engineers).
(cd "$here" && swift build -c release --product osbuild >/dev/null)
osbuild="$here/.build/release/osbuild"

mkdir -p "$work"
cd "$work"
if [ ! -f content/rootfs.img ]; then
	mkdir -p content
	# Realistic, partly compressible data: shared libraries of this host, then random.
	{ find /usr/lib /usr/bin -type f -size +16k 2>/dev/null | sort | xargs cat 2>/dev/null || true; } \
		| head -c $((rootfs_mb * 1024 * 1024 * 3 / 4)) >content/rootfs.img
	head -c $((rootfs_mb * 1024 * 1024 / 4)) /dev/urandom >>content/rootfs.img
	head -c $((24 * 1024 * 1024)) /dev/urandom >content/kernel.img
	dd if=/dev/zero of=content/boot.vfat bs=1M count=8 status=none
	printf '#!/bin/sh\nexit 0\n' >content/hook.sh
fi
if [ ! -f key.pem ]; then
	openssl req -x509 -newkey rsa:4096 -nodes -keyout key.pem -out cert.pem -days 3650 \
		-subj "/O=Bench/CN=Bench Signing" \
		-addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=codeSigning,emailProtection" 2>/dev/null
fi
# rauc rewrites manifest.raucm in place; give each tool its own copy of the manifest
# (the images are hard links, so both read identical bytes from the page cache).
write_manifest() {
	{
		printf '[update]\ncompatible=bench-board\nversion=1.0\n\n'
		[ "$format" = verity ] && printf '[bundle]\nformat=verity\n\n'
		printf '[hooks]\nfilename=hook.sh\nhooks=install-check;\n\n'
		printf '[image.rootfs]\nfilename=rootfs.img\n\n[image.kernel]\nfilename=kernel.img\n\n[image.boot]\nfilename=boot.vfat\n'
	} >"$1/manifest.raucm"
}
for d in c-osbuild c-rauc; do
	rm -rf "$d"
	mkdir "$d"
	ln content/rootfs.img content/kernel.img content/boot.vfat content/hook.sh "$d/"
done

rm -f osbuild.raucb rauc.raucb
hyperfine --runs "$runs" --warmup 1 --export-json result.json \
	--prepare "rm -f osbuild.raucb rauc.raucb; $(declare -f write_manifest); format=$format; write_manifest c-osbuild; write_manifest c-rauc" \
	-n osbuild "$osbuild bundle create --cert cert.pem --key key.pem c-osbuild osbuild.raucb" \
	-n rauc "rauc bundle --cert=cert.pem --key=key.pem c-rauc rauc.raucb"

# hyperfine's --prepare removed the other tool's output; rebuild ours once, then each
# tool must accept the other's bundle.
write_manifest c-osbuild
"$osbuild" bundle create --cert cert.pem --key key.pem c-osbuild osbuild.raucb >/dev/null
rauc info --keyring=cert.pem osbuild.raucb >/dev/null 2>&1 || { echo "rauc rejects osbuild's bundle" >&2; exit 1; }
"$osbuild" bundle info --keyring cert.pem rauc.raucb >/dev/null || { echo "osbuild rejects rauc's bundle" >&2; exit 1; }

python3 - "$work" <<'EOF'
import json, os, sys
w = sys.argv[1]
r = {x["command"]: x for x in json.load(open(os.path.join(w, "result.json")))["results"]}
o, p = r["osbuild"], r["rauc"]
print(f"osbuild: {o['mean']:.3f} s ± {o['stddev']:.3f}   rauc: {p['mean']:.3f} s ± {p['stddev']:.3f}")
print(f"ratio osbuild/peer = {o['mean'] / p['mean']:.2f}")
so, sp = os.path.getsize(os.path.join(w, "osbuild.raucb")), os.path.getsize(os.path.join(w, "rauc.raucb"))
print(f"size osbuild={so} rauc={sp} size ratio osbuild/peer = {so / sp:.4f}")
EOF
