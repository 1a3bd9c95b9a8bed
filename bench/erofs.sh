#!/usr/bin/env bash
# bench/erofs.sh [CORPUS_DIR]
# osbuild's EROFS writer vs mkfs.erofs (erofs-utils, Debian) on the same input with the same
# compression and physical cluster size. One hyperfine run per case (both tools in it),
# then image sizes. Prints "ratio osbuild/peer = X" for time and size.
# Env: RUNS (default 3), WARMUP (default 1), WORK (default /tmp/bench-erofs), CASES (space
# separated subset of: none lz4 lz4hc lz4hc-64k-ztail defaults), SYNC (default 0; 1 times
# both at equal durability: osbuild --sync, and mkfs.erofs followed by `sync FILE`, since
# mkfs.erofs leaves its image in the page cache like `osbuild mkfs` does by default).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${1:-/work/corpus-a}
WORK=${WORK:-/tmp/bench-erofs}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
CASES=${CASES:-"none lz4 lz4hc lz4hc-64k-ztail defaults"}
SYNC=${SYNC:-0}
T=1700000000
UUID=6f0e3b4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b
LOCK=${LOCK:-/tmp/osbuild-bench.lock}

for t in mkfs.erofs hyperfine python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 3; }; done
if [ ! -d "$CORPUS" ]; then
  flock /work/.corpus-a.lock sh -c "[ -d '$CORPUS' ] || '$ROOT/../shared/corpus/make-corpus-a.sh' '$CORPUS'"
fi
(cd "$ROOT" && flock "$LOCK" swift build -c release --product osbuild >/dev/null)
OSB="$ROOT/.build/release/osbuild"
mkdir -p "$WORK"
A="$WORK/osbuild.erofs"; B="$WORK/mkfs.erofs"

run_case() { # name, osbuild args, mkfs args
  local name=$1 oargs=$2 margs=$3
  local ocmd="env SOURCE_DATE_EPOCH=$T $OSB mkfs erofs $CORPUS $A --all-root --uuid $UUID $oargs"
  local mcmd="mkfs.erofs --quiet $margs -T$T -U$UUID --all-root $B $CORPUS"
  local otimed=$ocmd mtimed=$mcmd
  if [ "$SYNC" = 1 ]; then otimed="$ocmd --sync"; mtimed="sh -c '$mcmd && sync $B'"; name="$name-sync"; fi
  flock "$LOCK" hyperfine --shell=none --style basic --runs "$RUNS" --warmup "$WARMUP" \
    --prepare "rm -f $A $B" --export-json "$WORK/$name.json" -n osbuild "$otimed" -n mkfs.erofs "$mtimed" >/dev/null
  # The last timed run removed nothing after it: build both images once more for sizes.
  rm -f "$A" "$B"; $ocmd >/dev/null; $mcmd
  fsck.erofs "$A" >/dev/null
  python3 - "$WORK/$name.json" "$A" "$B" "$name" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))["results"]
t = {x["command"]: x for x in r}
o, m = t["osbuild"], t["mkfs.erofs"]
so, sm = os.path.getsize(sys.argv[2]), os.path.getsize(sys.argv[3])
print(f"{sys.argv[4]:16s} osbuild {o['mean']:.2f}s (user+sys {o['user']+o['system']:.2f}s) {so} B | "
      f"mkfs.erofs {m['mean']:.2f}s (user+sys {m['user']+m['system']:.2f}s) {sm} B")
print(f"{sys.argv[4]:16s} ratio osbuild/peer = {o['mean']/m['mean']:.2f} (time), {so/sm:.4f} (size)")
PY
}

for c in $CASES; do
  case $c in
    none)  run_case none "--comp none" "" ;;
    lz4)   run_case lz4 "--comp lz4 --cluster-size 4k --no-ztailpacking" "-zlz4" ;;
    lz4hc) run_case lz4hc "--comp lz4hc --level 9 --cluster-size 4k --no-ztailpacking" "-zlz4hc" ;;
    lz4hc-64k-ztail) run_case lz4hc-64k-ztail "--comp lz4hc --level 9 --cluster-size 64k" "-zlz4hc -C65536 -Eztailpacking" ;;
    defaults) run_case defaults "" "-zlz4hc -C65536 -Eztailpacking" ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done
