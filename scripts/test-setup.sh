#!/bin/sh
# Prepares inputs the test suite needs beyond Debian packages (run by `make test`).
# Each area adds an idempotent script scripts/test-setup.d/*.sh; they run in order.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for s in "$here"/test-setup.d/*.sh; do
    [ -e "$s" ] || continue
    echo "test-setup: $(basename "$s")"
    sh "$s"
done
