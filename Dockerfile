# pgdog and its plugins in a small image, run as a non-root user.
#
#   docker build -t pgdog .
#   docker run --rm -p 6432:6432 -p 6433:6433 -p 9090:9090 \
#       -v "$PWD/pgdog.toml:/etc/pgdog/pgdog.toml:ro" pgdog
#
# The binary is /usr/bin/pgdog and the plugins are in /usr/lib/pgdog/, where pgdog looks
# for them (../lib/pgdog/ from the binary). `docker stop` sends SIGTERM (a drain); give
# it more than shutdown_timeout_ms (`docker stop -t 30`). Not built by the tests.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pgdog -p pgdog-mirror-stats -p pgdog-strict-readiness \
    && strip target/release/pgdog target/release/libpgdog_mirror_stats.so \
        target/release/libpgdog_strict_readiness.so

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent \
        --shell /usr/sbin/nologin pgdog
COPY --from=build /src/target/release/pgdog /usr/bin/pgdog
COPY --from=build /src/target/release/libpgdog_mirror_stats.so \
    /src/target/release/libpgdog_strict_readiness.so /usr/lib/pgdog/
COPY deploy/pgdog.toml /etc/pgdog/pgdog.toml
USER pgdog:pgdog
EXPOSE 6432 6433 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/pgdog"]
CMD ["--config", "/etc/pgdog/pgdog.toml"]
