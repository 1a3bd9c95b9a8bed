#!/bin/bash
# bench/kconfig.sh -- whole Linux 6.1 x86_64 Kconfig tree: parse + olddefconfig.
#   osbuild merge-kconfig (probe cache cold and warm) vs the kernel's compiled
#   `scripts/kconfig/conf --olddefconfig` vs kconfiglib (PyPI, patched in a temp copy
#   for 6.1's `modules` keyword), all in ONE hyperfine run on the same input
#   (the x86_64_defconfig .config). Prints ratio lines and peak memory.
# Needs: scripts/fetch-kernel-source.sh, hyperfine, python3-venv, make/gcc/flex/bison.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
KSRC=${OSBUILD_KSRC:-/var/cache/osbuild/linux-6.1}
RUNS=${RUNS:-5}
[ -f "$KSRC/Kconfig" ] || { echo "bench: no kernel tree at $KSRC (scripts/fetch-kernel-source.sh)" >&2; exit 2; }
work=$(mktemp -d /tmp/osbuild-bench-kconfig-XXXXXX)
trap 'rm -rf "$work"' EXIT

lock=${LOCK:-/tmp/osbuild-bench.lock}
if [ -e "$lock" ]; then flock "$lock" swift build -c release --product osbuild --package-path "$repo" >&2
else swift build -c release --product osbuild --package-path "$repo" >&2; fi
OSB=$repo/.build/release/osbuild

# The kernel's own tool, built and fed the x86_64_defconfig result.
make -C "$KSRC" -s O="$work/k" ARCH=x86_64 x86_64_defconfig >/dev/null
cp "$work/k/.config" "$work/base.config"
CONF=$work/k/scripts/kconfig/conf

# The environment the kernel Makefile gives conf (host gcc).
kv=$(make -C "$KSRC" -s kernelversion 2>/dev/null | tail -n1)
export srctree=$KSRC ARCH=x86_64 SRCARCH=x86 CC=gcc LD=ld HOSTCC=gcc KERNELVERSION=$kv \
    CC_VERSION_TEXT="$(gcc --version | head -n1)" RUSTC=rustc BINDGEN=bindgen PAHOLE=pahole NM=nm OBJCOPY=objcopy \
    OBJDUMP=objdump AR=ar READELF=readelf STRIP=strip CPP="gcc -E" HOSTCXX=g++ LC_COLLATE=C LC_NUMERIC=C

# kconfiglib in a venv, patched: accept the bare `modules` property (MODULES is its default).
python3 -m venv "$work/venv" >/dev/null
"$work/venv/bin/pip" install -q kconfiglib >&2
kl=$(ls "$work"/venv/lib/python3*/site-packages/kconfiglib.py)
python3 - "$kl" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = "            elif t0 is _T_OPTIONAL:\n"
assert old in s, "kconfiglib layout changed"
s = s.replace(old, "            elif t0 is _T_MODULES:\n                pass\n\n" + old, 1)
open(p, "w").write(s)
PY
cat > "$work/kl.py" <<PY
import kconfiglib
k = kconfiglib.Kconfig("Kconfig", warn=False)
k.load_config("$work/kl.config")
k.write_config("$work/kl.out")
PY

# Same answer first (symbol by symbol).
cp "$work/base.config" "$work/c.config"
# conf writes include/config/ into its working directory: run it (and kconfiglib) in
# $work/run; both find Kconfig through $srctree.
mkdir -p "$work/run"
(cd "$work/run" && KCONFIG_CONFIG="$work/c.config" "$CONF" -s --olddefconfig Kconfig)
OSBUILD_KCONFIG_CACHE="$work/cache-warm" "$OSB" merge-kconfig --kernel-src "$KSRC" --arch x86_64 \
    --defconfig "$work/base.config" -o "$work/o.config" >/dev/null
if cmp -s "$work/o.config" "$work/c.config"; then echo "osbuild .config == conf .config (byte-identical)"
else echo "bench: osbuild and conf disagree:" >&2; diff "$work/o.config" "$work/c.config" >&2; exit 1; fi

osb="$OSB merge-kconfig --kernel-src $KSRC --arch x86_64 --defconfig $work/base.config -o $work/o.config"
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/h.json" \
    --prepare "cp $work/base.config $work/c.config" \
    -n conf "sh -c 'cd $work/run && KCONFIG_CONFIG=$work/c.config $CONF -s --olddefconfig Kconfig'" \
    --prepare "cp $work/base.config $work/kl.config" \
    -n kconfiglib "sh -c 'cd $work/run && $work/venv/bin/python $work/kl.py'" \
    --prepare "rm -rf $work/cache-cold" \
    -n osbuild-cold "env OSBUILD_KCONFIG_CACHE=$work/cache-cold $osb" \
    --prepare "true" \
    -n osbuild-warm "env OSBUILD_KCONFIG_CACHE=$work/cache-warm $osb"

python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
for k, v in r.items(): print(f"median {k:13s} {v:.3f} s")
print(f"ratio osbuild/peer = {r['osbuild-cold']/r['conf']:.2f}  (cold probe cache vs conf)")
print(f"ratio osbuild/peer = {r['osbuild-warm']/r['conf']:.2f}  (warm probe cache vs conf)")
print(f"ratio osbuild/peer = {r['osbuild-warm']/r['kconfiglib']:.2f}  (warm vs kconfiglib)")
print(f"ratio osbuild/peer = {r['osbuild-cold']/r['kconfiglib']:.2f}  (cold vs kconfiglib)")
PY
mem() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1; }
cp "$work/base.config" "$work/c.config"
echo "peak RSS (KB): conf $(cd "$work/run" && KCONFIG_CONFIG=$work/c.config mem "$CONF" -s --olddefconfig Kconfig)," \
    "osbuild-warm $(OSBUILD_KCONFIG_CACHE=$work/cache-warm mem $osb)"
