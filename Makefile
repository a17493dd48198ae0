# The project's commands. `make test` is the README's test command and what CI runs.
# Recipes are indented with tabs.

CARGO ?= cargo

.PHONY: test setup lint build test-rust test-suites test-mirror-integration test-mirror-quick \
	demo bench bench-quick

## Everything: install what the tests need, lint, build, run every suite (the Rust suites, then
## the user's Ruby and shell suites; in this order, without -j: the suites share two cores, and
## the Ruby suite times things).
test: setup lint build test-rust test-suites

setup:
	bash scripts/setup.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/check-layout.py

## The tests run the real binary and load the real plugin .so files: build them first
## (cargo test does not build other crates' cdylibs), plus the deliberately broken plugins.
## This build and the test build share every compiled dependency: the features the tests'
## dev-dependencies would add (sqlx's serde `rc`, tracing `log`, ...) are turned on here already,
## through integration/Cargo.toml. Before that, the dependencies were compiled twice, and the
## Ruby suite's `cargo build -p ...` relinked pgdog with the binaries' own feature set: .ci/run
## in a fresh clone went from 18-20 min to 17 min 19 s (2026-12-08).
build:
	$(CARGO) build --workspace
	bash integration/plugin-fixtures/build.sh

test-rust: build
	$(CARGO) nextest run --workspace --no-fail-fast

## The user's end-to-end mirror metrics suites in integration/mirror/ (RSpec, then the shell
## script). Each starts from a clean state: fresh servers on 5432/5433 (clusters.sh up, which
## refuses to run if those ports are taken) and a fresh pgdog on 6432/6433/9090, and stops
## everything when it ends, passed or failed. The shell script runs even if the Ruby suite
## failed; the target fails if either did.
test-suites: build
	@status=0; \
	rspec integration/mirror/full_integration_spec.rb || status=1; \
	bash integration/mirror/full_test.sh || status=1; \
	exit $$status

## The spec's targets. No Docker here: `docker-compose up -d` / `down` are clusters.sh up / down
## (the same servers as throwaway clusters; taken down even when a step fails), and there is no
## fixed `sleep 5` (clusters.sh returns once the servers accept connections). The Rust suite is
## the package pgdog-spec-tests (integration/rust/; it starts its own servers on free ports).
## `rspec` rather than `bundle exec rspec`: there is no Gemfile; Debian's ruby-rspec and ruby-pg
## (scripts/setup.sh) provide it.
test-mirror-integration: build
	@echo "Running mirror metrics integration tests..."
	@set -e; trap 'bash integration/mirror/clusters.sh down' EXIT; \
	bash integration/mirror/clusters.sh up; \
	$(CARGO) nextest run -p pgdog-spec-tests mirror_metrics --test-threads=1; \
	$(CARGO) test -p pgdog-spec-tests --test mirror_metrics -- --test-threads=1; \
	rspec integration/mirror/full_integration_spec.rb

test-mirror-quick:
	@echo "Quick mirror metrics test..."
	./integration/mirror/full_test.sh

bench:
	bash bench/pgbench.sh

bench-quick:
	bash bench/pgbench.sh --quick

## The main job: clusters, proxy with mirroring, traffic, readiness and metrics
## (DEMO_ARGS="--replication": the cut-over with logical replication; "--tls": TLS only).
demo:
	bash scripts/demo.sh $(DEMO_ARGS)
