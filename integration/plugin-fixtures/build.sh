#!/usr/bin/env bash
# Builds the fixture plugins used by core/tests/plugins.rs into
# ${CARGO_TARGET_DIR:-<repo>/target}/plugin-fixtures/debug/.
# Each package is built on its own so plugin-api's fixture features never unify.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/plugin-fixtures"
for package in pgdog-fixture-test-plugin pgdog-fixture-old-api pgdog-fixture-bad-layout pgdog-fixture-not-a-plugin; do
    cargo build --quiet --manifest-path "$here/Cargo.toml" --target-dir "$target" -p "$package"
done
echo "plugin fixtures built in $target/debug"
