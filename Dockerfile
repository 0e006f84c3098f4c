# Flotilla server image: the `flotilla` binary, the web UI and the migrations (embedded in the
# binary). Build: docker build -t flotilla .   Run: see compose.yaml and docs/configuration.md.

# ---- build: the server (release) and the frontend (wasm) ----
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The same recipe as `cargo xtask frontend`: wasm target, wasm-bindgen from Cargo.lock,
# wasm-opt from npm's binaryen.
RUN cargo xtask frontend \
 && cargo build --release --locked --package flotilla-server --bin flotilla

# ---- runtime: a slim image, non-root, only what the server needs ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app flotilla
WORKDIR /app
COPY --from=build /src/target/release/flotilla /usr/local/bin/flotilla
COPY --from=build /src/static /app/static
USER flotilla
ENV FLOTILLA_LISTEN=0.0.0.0:8080 \
    FLOTILLA_MQTT_LISTEN=0.0.0.0:18830 \
    FLOTILLA_STATIC_DIR=/app/static
EXPOSE 8080 18830
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["flotilla"]
CMD ["serve"]
