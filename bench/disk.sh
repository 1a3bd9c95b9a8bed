#!/bin/sh
# Disk image benchmark: the same genimage config (GPT, vfat boot with files, ext4 rootfs
# of ~185 MB / ~12k entries from /usr, empty ext4 data, raw bootloader blob) built by
# Debian's genimage 16 and by `osbuild image`, in ONE hyperfine run.
# Prints `ratio osbuild/genimage = X` (time) and the on-disk size ratio of disk.img.
# Usage: bench/disk.sh   (env: OSBUILD=path/to/osbuild, WORK=dir, RUNS=n)
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
OSBUILD=${OSBUILD:-$HERE/.build/release/osbuild}
WORK=${WORK:-/tmp/osbuild-bench-disk}
RUNS=${RUNS:-5}
export PATH="$PATH:/usr/sbin:/sbin"
export SOURCE_DATE_EPOCH=1704067200 E2FSPROGS_FAKE_TIME=1704067200

for t in genimage hyperfine mkfs.vfat mcopy mke2fs; do
	command -v "$t" >/dev/null || { echo "missing $t (scripts/install-deps.sh)"; exit 3; }
done
[ -x "$OSBUILD" ] || { echo "build osbuild first: swift build -c release (or set OSBUILD)"; exit 3; }

mkdir -p "$WORK"
if [ ! -f "$WORK/.inputs-done" ]; then
	rm -rf "$WORK/root" "$WORK/input"
	mkdir -p "$WORK/root/usr/lib" "$WORK/input/overlays"
	cp -a /usr/include "$WORK/root/usr/include"
	cp -a /usr/lib/python3.11 "$WORK/root/usr/lib/python3.11" 2>/dev/null || cp -a /usr/lib/python3 "$WORK/root/usr/lib/python3"
	mkdir -p "$WORK/root/boot" "$WORK/root/etc"
	echo bench > "$WORK/root/etc/hostname"
	head -c 30000000 /dev/urandom > "$WORK/input/kernel.img"
	head -c 300000 /dev/urandom > "$WORK/input/board.dtb"
	for i in 1 2 3 4 5 6 7 8; do head -c 20000 /dev/urandom > "$WORK/input/overlay$i.dtbo"; done
	echo "console=ttyS0 root=PARTUUID=0b0b0b0b-0000-4000-8000-000000000002" > "$WORK/input/cmdline.txt"
	head -c 500000 /dev/urandom > "$WORK/input/spl.bin"
	find "$WORK/root" "$WORK/input" -exec touch -h -d @1704067200 {} +
	touch "$WORK/.inputs-done"
fi

cat > "$WORK/genimage.cfg" <<'EOF'
image boot.vfat {
	vfat {
		label = "BOOT"
		extraargs = "-i 0x0B007001"
		files = { "kernel.img", "board.dtb", "cmdline.txt" }
		file overlays/overlay1.dtbo { image = "overlay1.dtbo" }
		file overlays/overlay2.dtbo { image = "overlay2.dtbo" }
		file overlays/overlay3.dtbo { image = "overlay3.dtbo" }
		file overlays/overlay4.dtbo { image = "overlay4.dtbo" }
	}
	size = 64M
	temporary = true
}
image rootfs.ext4 {
	ext4 { use-mke2fs = true label = "rootfs" extraargs = "-U 6b2a7f3e-0d2c-4b77-9a39-2d0c5f7c1a10" }
	size = 512M
	mountpoint = "/"
}
image data.ext4 {
	ext4 { use-mke2fs = true label = "data" extraargs = "-U 6b2a7f3e-0d2c-4b77-9a39-2d0c5f7c1a11" }
	size = 256M
	empty = true
	temporary = true
}
image disk.img {
	hdimage { partition-table-type = "gpt" align = 1M disk-uuid = "4a1b2c3d-1111-4222-8333-444455556666" }
	partition spl { in-partition-table = false offset = 32K image = "spl.bin" }
	partition boot { partition-type-uuid = "U" partition-uuid = "0b0b0b0b-0000-4000-8000-000000000001" image = "boot.vfat" offset = 4M bootable = true }
	partition rootfs { partition-type-uuid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709" partition-uuid = "0b0b0b0b-0000-4000-8000-000000000002" image = "rootfs.ext4" }
	partition data { partition-type-uuid = "L" partition-uuid = "0b0b0b0b-0000-4000-8000-000000000003" image = "data.ext4" }
}
EOF

common="--rootpath $WORK/root --inputpath $WORK/input --config $WORK/genimage.cfg"
hyperfine --style basic --runs "$RUNS" --warmup 1 --export-json "$WORK/hyperfine.json" \
	--prepare "rm -rf $WORK/gtmp $WORK/gout; sync" \
	--prepare "rm -rf $WORK/otmp $WORK/oout; sync" \
	-n genimage "genimage $common --tmppath $WORK/gtmp --outputpath $WORK/gout" \
	-n osbuild "$OSBUILD image $common --tmppath $WORK/otmp --outputpath $WORK/oout"

python3 - "$WORK/hyperfine.json" <<'EOF'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
print("genimage mean %.3f s, osbuild mean %.3f s" % (r["genimage"], r["osbuild"]))
print("ratio osbuild/genimage = %.2f" % (r["osbuild"] / r["genimage"]))
EOF
g=$(du -k "$WORK/gout/disk.img" | cut -f1); o=$(du -k "$WORK/oout/disk.img" | cut -f1)
echo "disk.img on disk: genimage ${g} KiB, osbuild ${o} KiB; size ratio osbuild/genimage = $(python3 -c "print('%.2f' % ($o/$g))")"
a=$(sfdisk --dump "$WORK/gout/disk.img" | sed "s|$WORK/gout/||"); b=$(sfdisk --dump "$WORK/oout/disk.img" | sed "s|$WORK/oout/||")
[ "$a" = "$b" ] && echo "sfdisk --dump: identical" || echo "sfdisk --dump: DIFFERENT"
