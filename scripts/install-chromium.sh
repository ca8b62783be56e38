#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (never a browser downloaded by playwright).
# Safe to run again: it does nothing when chromium is already on PATH. Works as root and,
# for everyone else, through sudo. tests/test_install_scripts.py runs it with stub commands.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# A new machine has no package lists yet; `env` carries the setting through sudo's env_reset.
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null  # errors still reach stderr

command -v chromium >/dev/null 2>&1 || {
    echo "install-chromium: apt-get finished but chromium is still not on PATH" >&2
    exit 1
}
