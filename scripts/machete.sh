#!/usr/bin/env bash
# Unused dependencies with cargo-machete (installed from crates.io when missing); false positives are
# listed under [package.metadata.cargo-machete] in Cargo.toml with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_MACHETE_VERSION="${CARGO_MACHETE_VERSION:-0.9.2}"
if ! cargo machete --version 2>/dev/null | grep -qF "$CARGO_MACHETE_VERSION"; then
  echo "machete: installing cargo-machete $CARGO_MACHETE_VERSION"
  cargo install --quiet --locked --version "$CARGO_MACHETE_VERSION" cargo-machete
fi
echo "machete: cargo machete"
cargo machete
