#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: evalboard with its test extras,
# Debian's Chromium for the Playwright tests, and a running local Postgres when one is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"

if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Debian's Chromium for the browser tests..."
  if [ "$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo apt-get"; fi
  $APT update -qq && $APT install -y -qq chromium >/dev/null
fi

# Postgres tests run when EVALBOARD_TEST_POSTGRES_URL is set; make sure a local server is up.
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | head -n 1)
  [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
