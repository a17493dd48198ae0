# The project's commands. `make test` is the README's test command and what CI runs.
# Recipes are indented with tabs.

CARGO ?= cargo

.PHONY: test setup lint build test-rust demo bench bench-quick

## Everything: install what the tests need, lint, build, run every suite.
test: setup lint build test-rust

setup:
	bash scripts/setup.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## The tests run the real binary and load the real plugin .so files: build them first
## (cargo test does not build other crates' cdylibs), plus the deliberately broken plugins.
build:
	$(CARGO) build --workspace
	bash integration/plugin-fixtures/build.sh

test-rust: build
	$(CARGO) nextest run --workspace --no-fail-fast

bench:
	bash bench/pgbench.sh

bench-quick:
	bash bench/pgbench.sh --quick

## The main job: clusters, proxy with mirroring, traffic, readiness and metrics.
demo:
	bash scripts/demo.sh
