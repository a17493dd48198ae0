#!/usr/bin/env bash
# Builds the fixture plugins used by core/tests/plugins.rs into
# ${CARGO_TARGET_DIR:-<repo>/target}/plugin-fixtures/debug/.
# Each package is built on its own so plugin-api's fixture features never unify.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/plugin-fixtures"
for package in pgdog-fixture-test-plugin pgdog-fixture-old-api pgdog-fixture-bad-layout pgdog-fixture-not-a-plugin \
    pgdog-fixture-stalled-stats pgdog-fixture-older-minor pgdog-fixture-claims-other-minor \
    pgdog-fixture-newer-minor; do
    cargo build --quiet --manifest-path "$here/Cargo.toml" --target-dir "$target" -p "$package"
done
echo "plugin fixtures built in $target/debug"

# export_plugin! refuses panic = "abort": a plugin built that way must not compile.
log="$target/abort-check.log"
if RUSTFLAGS="-C panic=abort" cargo check --quiet --manifest-path "$here/Cargo.toml" \
    --target-dir "$target/abort" -p pgdog-fixture-test-plugin >"$log" 2>&1; then
    echo "a plugin built with panic = \"abort\" compiled; export_plugin! should refuse it" >&2
    exit 1
fi
if ! grep -q 'panic = "unwind"' "$log"; then
    echo "a plugin built with panic = \"abort\" failed for another reason:" >&2
    cat "$log" >&2
    exit 1
fi
echo "a plugin built with panic = \"abort\" is refused at compile time"
