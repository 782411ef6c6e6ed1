#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/test_browser.py drives it headless through Playwright).
#   infra/install_chromium.sh          # installs the `chromium` package when /usr/bin/chromium is missing
# Idempotent and quiet: prints one line; apt's output goes to $SPACE_HOME/logs/apt-chromium.log (.space).
# Needs root or sudo. Playwright's own browser download (`playwright install`) is not used.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SPACE_CHROMIUM:-/usr/bin/chromium}  # the same variable tells tests/test_browser.py where it is
if [[ -x "$BIN" ]]; then
  echo "chromium: $("$BIN" --version 2> /dev/null || echo "$BIN")"
  exit 0
fi
LOG_DIR=$(realpath -m "${SPACE_HOME:-.space}")/logs
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/apt-chromium.log"
if [[ $(id -u) -eq 0 ]]; then SUDO=(); elif command -v sudo > /dev/null; then SUDO=(sudo -n); else
  echo "chromium is missing and installing it needs root: apt-get install -y chromium" >&2; exit 1
fi
echo "installing Debian's chromium (log: $LOG)"
if ! { "${SUDO[@]}" apt-get update -q && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q chromium; } \
  > "$LOG" 2>&1; then
  echo "apt-get install chromium failed; last lines of $LOG:" >&2
  tail -20 "$LOG" >&2
  exit 1
fi
echo "chromium: $("$BIN" --version 2> /dev/null)"
