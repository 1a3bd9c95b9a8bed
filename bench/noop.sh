#!/bin/sh
# No-op rebuild cost, two ratios in one run:
#  1. no-op `osbuild make BOARD` vs the full build of BOARD      (target < 0.02)
#  2. no-op make with 10,000 extra files in overlay/ vs `git status` over the same
#     tree                                                       (target <= 1.0)
# Usage: bench/noop.sh [BOARD]   (default qemu-x86-64)
set -eu
board=${1:-qemu-x86-64}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
swift build -c release --static-swift-stdlib --product osbuild >/dev/null
bin="$repo/.build/release/osbuild"
work=$(mktemp -d /tmp/osbuild-noop.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OSBUILD_DL_CACHE="${OSBUILD_DL_CACHE:-$repo/dl}"

# 1. full build (forced, fresh build dir) vs no-op rebuild
hyperfine --style basic --runs 3 --export-json "$work/full.json" \
    --prepare "rm -rf $work/b1" "$bin make $board -O $work/b1" >/dev/null
"$bin" make "$board" -O "$work/b1" >/dev/null
hyperfine --style basic --warmup 2 --runs 20 --export-json "$work/noop.json" "$bin make $board -O $work/b1" >/dev/null
full=$(python3 -c "import json;print(json.load(open('$work/full.json'))['results'][0]['mean'])")
noop=$(python3 -c "import json;print(json.load(open('$work/noop.json'))['results'][0]['mean'])")
echo "full build of $board: ${full} s; no-op rebuild: ${noop} s"
python3 -c "print('ratio noop/full = %.4f (target < 0.02)' % ($noop/$full))"

# 2. a copy of the project with 10,000 more files in overlay/, under git
proj="$work/proj"
mkdir -p "$proj"
cp -r boards overlay "$proj/"
python3 - "$proj/overlay/usr/share/bench" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, "d%03d" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(100):
        with open(os.path.join(p, "f%03d.txt" % f), "w") as fh:
            fh.write("file %d %d\n" % (d, f) * 20)
PY
( cd "$proj" && git init -q && git add -A && git -c user.email=b@b -c user.name=b commit -qm bench )
OSBUILD_PROJECT="$proj" "$bin" make "$board" -O "$work/b2" >/dev/null
sleep 2   # let the stat cache trust the new files (racy-timestamp window)
OSBUILD_PROJECT="$proj" "$bin" make "$board" -O "$work/b2" >/dev/null
hyperfine --style basic --warmup 3 --runs 20 --export-json "$work/cmp.json" \
    "env OSBUILD_PROJECT=$proj $bin make $board -O $work/b2" \
    "git -C $proj status --porcelain" >/dev/null
python3 - "$work/cmp.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
o, g = r[0]["mean"], r[1]["mean"]
print("no-op make with 10,000 overlay files: %.4f s; git status: %.4f s" % (o, g))
print("ratio osbuild-noop/git-status = %.2f (target <= 1.0)" % (o / g))
PY
