# Flotilla server image: the `flotilla` binary (the migrations are embedded in it) and the web
# UI. Build: `docker build -t flotilla .`   Run: see compose.yaml and docs/configuration.md.
#
# `cargo xtask ci` lints this file and checks that every build command below is one CI runs too
# (the frontend recipe, the server build) or one derived from the same xtask constants (the
# dependency-only builds). Change a build command in xtask/src/docker.rs first.

# ---- chef: the Rust toolchain and cargo-chef, shared by both build stages ----
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /src

# ---- planner: the dependency recipe (the manifests and Cargo.lock, nothing else) ----
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- frontend: the web UI into /src/static, exactly as `cargo xtask frontend` builds it ----
FROM chef AS frontend
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-unknown-unknown
COPY --from=planner /src/recipe.json recipe.json
# The UI's dependencies: this layer is reused until a manifest or Cargo.lock changes.
RUN cargo chef cook --recipe-path recipe.json --profile wasm-release --target wasm32-unknown-unknown --package flotilla-frontend
# wasm-bindgen of Cargo.lock's version and wasm-opt, installed by xtask under target/tools:
# reused until xtask or a manifest changes. The real root manifest goes in too: cargo-chef's
# skeleton of it lacks the `[workspace.lints]` that xtask's manifest inherits.
COPY Cargo.toml ./
COPY .cargo .cargo
COPY xtask xtask
RUN cargo xtask frontend-tools
COPY . .
RUN cargo xtask frontend

# ---- server: the release binary ----
FROM chef AS server
COPY --from=planner /src/recipe.json recipe.json
# The server's dependencies: this layer is reused until a manifest or Cargo.lock changes.
RUN cargo chef cook --recipe-path recipe.json --release --package flotilla-server
COPY . .
RUN cargo build --locked --package flotilla-server --bin flotilla --release

# ---- runtime: a slim image, non-root, only the binary and the web UI ----
FROM debian:bookworm-slim
# ca-certificates for AWS and OpenID endpoints; curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --home-dir /app --no-create-home flotilla \
 && mkdir -p /app/data \
 && chown flotilla:flotilla /app/data
WORKDIR /app
COPY --from=server /src/target/release/flotilla /usr/local/bin/flotilla
COPY --from=frontend /src/static /app/static
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# Listen on every interface inside the container; local mode keeps its artifacts in the volume.
ENV FLOTILLA_LISTEN=0.0.0.0:8080 \
    FLOTILLA_MQTT_LISTEN=0.0.0.0:18830 \
    FLOTILLA_MQTTS_LISTEN=0.0.0.0:18831 \
    FLOTILLA_S3_LISTEN=0.0.0.0:18832 \
    FLOTILLA_ARTIFACT_DIR=/app/data/artifacts \
    FLOTILLA_STATIC_DIR=/app/static
VOLUME ["/app/data"]
EXPOSE 8080 18830 18831 18832
# The port is read from FLOTILLA_LISTEN at check time, so overriding it keeps the check right.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["sh", "-c", "curl -fsS \"http://127.0.0.1:${FLOTILLA_LISTEN##*:}/healthz\" || exit 1"]
ENTRYPOINT ["flotilla"]
CMD ["serve"]
