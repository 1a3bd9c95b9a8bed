#!/usr/bin/env bash
# bench/squashfs.sh [CORPUS_DIR]
#
# osbuild's SquashFS writer vs mksquashfs on the same input, same compressor and block
# size, one hyperfine run per compressor (gzip, xz, lz4, zstd). Prints the time ratio,
# image size ratio and peak RSS (GNU time) of both. A ratio below 1.0 = osbuild better.
#
#   CORPUS_DIR   input tree (default /work/corpus-a: the realistic rootfs corpus made by
#                ../shared/corpus/make-corpus-a.sh; it is generated there when missing)
# Env: RUNS (hyperfine runs, default 2), COMPS (default "gzip xz lz4 zstd"),
#      BLOCK (block size in bytes, default 131072), WORK (scratch dir, default a temp dir),
#      SYNC (default 0; 1 times both at equal durability: osbuild --sync, and mksquashfs
#      followed by `sync FILE`, since mksquashfs leaves its image in the page cache like
#      `osbuild mkfs` does by default).
# Needs: hyperfine, mksquashfs (squashfs-tools), GNU time, python3. Run as root so both
# tools can read every file of the corpus.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${1:-/work/corpus-a}
RUNS=${RUNS:-2}
COMPS=${COMPS:-"gzip xz lz4 zstd"}
BLOCK=${BLOCK:-131072}
LOCK=${LOCK:-/tmp/osbuild-bench.lock}

if [ ! -d "$CORPUS" ]; then
  gen="$here/../shared/corpus/make-corpus-a.sh"
  [ -x "$gen" ] || gen=/work/shared/corpus/make-corpus-a.sh
  echo "corpus $CORPUS missing; generating it with $gen" >&2
  "$gen" "$CORPUS"
fi
for t in hyperfine mksquashfs python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 3; }
done
[ -x /usr/bin/time ] || { echo "missing GNU time (/usr/bin/time)" >&2; exit 3; }

# The machine is shared: builds and benchmarks take the same lock.
exec 9>"$LOCK"
flock 9
(cd "$here" && swift build -c release --product osbuild >/dev/null)
OSB="$here/.build/release/osbuild"

WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/bench-squashfs.XXXXXX")}
mkdir -p "$WORK"
trap 'rm -f "$WORK"/*.sqfs' EXIT
export SOURCE_DATE_EPOCH=1700000000

rss() { # peak RSS in MiB of one run of "$@"
  /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1 | awk '{printf "%.0f", $1/1024}'
}

printf '%-5s %10s %10s %8s %9s %9s %8s %12s %12s %8s %9s %9s\n' comp osbuild_s mksq_s t_ratio osb_cpu mksq_cpu c_ratio osbuild_B mksq_B s_ratio osb_MiB mksq_MiB
for comp in $COMPS; do
  osb=(env SOURCE_DATE_EPOCH=1700000000 "$OSB" mkfs squashfs "$CORPUS" "$WORK/osb-$comp.sqfs" --comp "$comp" --block-size "$BLOCK" --all-root)
  mks=(mksquashfs "$CORPUS" "$WORK/mks-$comp.sqfs" -noappend -comp "$comp" -b "$BLOCK" -all-root -no-progress -quiet)
  otimed="${osb[*]}"; mtimed="${mks[*]}"
  if [ "${SYNC:-0}" = 1 ]; then otimed="$otimed --sync"; mtimed="sh -c '$mtimed && sync $WORK/mks-$comp.sqfs'"; fi
  hyperfine --style basic --shell=none --runs "$RUNS" \
    --export-json "$WORK/$comp.json" -n osbuild "$otimed" -n mksquashfs "$mtimed" >&2
  so=$(stat -c %s "$WORK/osb-$comp.sqfs"); sm=$(stat -c %s "$WORK/mks-$comp.sqfs")
  ro=$(rss "${osb[@]}"); rm=$(rss "${mks[@]}")
  python3 - "$WORK/$comp.json" "$comp" "$so" "$sm" "$ro" "$rm" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
m = {r["command"]: r["mean"] for r in j["results"]}
cpu = {r["command"]: r["user"] + r["system"] for r in j["results"]}
comp, so, sm, ro, rm = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
o, k = m["osbuild"], m["mksquashfs"]
co, ck = cpu["osbuild"], cpu["mksquashfs"]
print("%-5s %10.2f %10.2f %8.2f %9.1f %9.1f %8.2f %12d %12d %8.3f %9s %9s" % (comp, o, k, o / k, co, ck, co / ck, so, sm, so / sm, ro, rm))
print("%s: ratio osbuild/peer = %.2f (time), %.2f (user+sys CPU), size ratio = %.3f, peak RSS %s MiB vs %s MiB" % (comp, o / k, co / ck, so / sm, ro, rm), file=sys.stderr)
PY
done
