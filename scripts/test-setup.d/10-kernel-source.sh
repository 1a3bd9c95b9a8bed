#!/bin/sh
# Kernel sources for the Kconfig oracle tests (idempotent).
exec "$(dirname "$0")/../fetch-kernel-source.sh"
