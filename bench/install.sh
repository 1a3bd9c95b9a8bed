#!/usr/bin/env bash
# bench/install.sh - `osbuild bundle install` vs the same job done with stock tools
# (`rauc extract` + `dd conv=sparse,fsync` per image + mtools/grub-editenv for grubenv)
# on the same verity bundle (~ROOTFS_MB MiB rootfs + 24 MiB kernel) and GPT image, in ONE
# hyperfine run. Every run starts from a fresh sparse copy of the image (--prepare).
# Prints `ratio osbuild/peer = X` (time) and osbuild's peak RSS.
#
# Usage: bench/install.sh [WORKDIR]   (env: RUNS=5, ROOTFS_MB=192)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bench-install.XXXXXX")}
runs=${RUNS:-5}
rootfs_mb=${ROOTFS_MB:-192}

for t in hyperfine rauc sfdisk mkfs.vfat mcopy grub-editenv openssl; do
	command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/install-deps.sh)" >&2; exit 69; }
done

(cd "$here" && swift build -c release --product osbuild >/dev/null)
osbuild="$here/.build/release/osbuild"

mkdir -p "$work"
cd "$work"
if [ ! -f content/rootfs.img ]; then
	mkdir -p content
	{ find /usr/lib /usr/bin -type f -size +16k 2>/dev/null | sort | xargs cat 2>/dev/null || true; } \
		| head -c $((rootfs_mb * 1024 * 1024 * 3 / 4)) >content/rootfs.img
	head -c $((rootfs_mb * 1024 * 1024 / 8)) /dev/urandom >>content/rootfs.img
	head -c $((rootfs_mb * 1024 * 1024 / 8)) /dev/zero >>content/rootfs.img
	head -c $((24 * 1024 * 1024)) /dev/urandom >content/kernel.img
	printf '[update]\ncompatible=bench-board\nversion=2.0\n\n[bundle]\nformat=verity\n\n[image.kernel]\nfilename=kernel.img\n\n[image.rootfs]\nfilename=rootfs.img\n' >content/manifest.raucm
fi
if [ ! -f key.pem ]; then
	openssl req -x509 -newkey rsa:4096 -nodes -keyout key.pem -out cert.pem -days 3650 \
		-subj "/O=Bench/CN=Bench Signing" \
		-addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=codeSigning,emailProtection" 2>/dev/null
fi
[ -f update.raucb ] || "$osbuild" bundle create --cert cert.pem --key key.pem content update.raucb >/dev/null

# The disk: GPT with an ESP holding grub/grubenv + an osbuild-style grub.cfg (try limit 3).
if [ ! -f pristine.img ]; then
	truncate -s 700M pristine.img
	sfdisk -q pristine.img <<-TABLE
		label: gpt
		size=32M, type=uefi, name=boot
		size=32M, name=kernel0
		size=256M, name=system0
		size=32M, name=kernel1
		size=256M, name=system1
	TABLE
	truncate -s 32M esp.vfat && mkfs.vfat -n BOOT esp.vfat >/dev/null
	grub-editenv grubenv create && grub-editenv grubenv set ORDER="A B" A_OK=1 B_OK=0 A_TRY=0 B_TRY=0
	for n in 0 1 2; do echo "  if [ \"\$try\" = \"$n\" ]; then set next=\"$((n + 1))\"; fi"; done >grub.cfg
	mmd -i esp.vfat ::/grub && mcopy -i esp.vfat grubenv grub.cfg ::/grub/
	dd if=esp.vfat of=pristine.img bs=1M seek=1 conv=notrunc,sparse status=none
fi
start() { sfdisk --json pristine.img | python3 -c "import json,sys; print([p['start'] for p in json.load(sys.stdin)['partitiontable']['partitions'] if p['name']=='$1'][0])"; }
k1=$(start kernel1); s1=$(start system1); esp=$(start boot)

cat >peer.sh <<EOF2
set -e
rm -rf x
rauc extract --keyring cert.pem update.raucb x 2>/dev/null
dd if=x/kernel.img of=t-peer.img bs=1M seek=$((k1 * 512)) oflag=seek_bytes conv=notrunc,sparse,fsync status=none
dd if=x/rootfs.img of=t-peer.img bs=1M seek=$((s1 * 512)) oflag=seek_bytes conv=notrunc,sparse,fsync status=none
mcopy -n -i t-peer.img@@$((esp * 512)) ::/grub/grubenv env
grub-editenv env set ORDER="B A" B_OK=1 B_TRY=0
mcopy -o -i t-peer.img@@$((esp * 512)) env ::/grub/grubenv
sync -f t-peer.img
EOF2

hyperfine --runs "$runs" --warmup 1 --export-json result.json \
	--prepare "cp --sparse=always pristine.img t-osbuild.img; cp --sparse=always pristine.img t-peer.img" \
	-n osbuild "$osbuild bundle install update.raucb --image t-osbuild.img --keyring cert.pem --compatible bench-board" \
	-n peer "bash peer.sh"

python3 - <<'PY'
import json
r = {x["command"]: x for x in json.load(open("result.json"))["results"]}
print("ratio osbuild/peer = %.2f" % (r["osbuild"]["mean"] / r["peer"]["mean"]))
PY
cp --sparse=always pristine.img t-osbuild.img
/usr/bin/time -f "osbuild peak RSS %M KiB" "$osbuild" bundle install update.raucb --image t-osbuild.img --keyring cert.pem --compatible bench-board >/dev/null
cmp -n "$(stat -c %s content/rootfs.img)" content/rootfs.img t-osbuild.img -i "0:$((s1 * 512))" && echo "rootfs written correctly"
echo "allocated: osbuild $(du -k t-osbuild.img | cut -f1) KiB, peer $(du -k t-peer.img | cut -f1) KiB"
