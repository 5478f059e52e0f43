# kvstore: kv-server and kv-sweeper in one image.
#
#   docker build -t kvstore .
#   docker run -p 127.0.0.1:8000:8000 -v kv-data:/data kvstore
#
# The server listens on 0.0.0.0:8000 inside the container and keeps its SQLite file in the
# /data volume; give DATABASE_URL=postgres://… for PostgreSQL. `kv-sweeper` is the other
# entry point (see compose.yaml). Runs as the unprivileged user 65532.

# Build with the official Rust image (Debian 12).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# libpq's TLS is OpenSSL, compiled from source in the build (openssl-src): it needs perl and make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make perl \
 && rm -rf /var/lib/apt/lists/*

# The dependencies first, in a layer of their own, rebuilt only when a manifest or the lock
# file changes: the workspace's manifests with stand-in sources.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates/kv-core/Cargo.toml crates/kv-core/
COPY crates/kv-server/Cargo.toml crates/kv-server/
COPY crates/kv-sweeper/Cargo.toml crates/kv-sweeper/
RUN mkdir -p crates/kv-core/src crates/kv-core/benches crates/kv-server/src crates/kv-sweeper/src \
 && touch crates/kv-core/src/lib.rs crates/kv-server/src/lib.rs \
 && for stub in crates/kv-core/build.rs crates/kv-core/benches/store.rs \
        crates/kv-server/src/main.rs crates/kv-sweeper/src/main.rs; do \
        echo 'fn main() {}' > "$stub"; \
    done \
 && cargo build --release --locked -p kv-server -p kv-sweeper \
 && rm -rf crates

# Then kvstore itself (touched, so cargo rebuilds it over the stand-ins whatever the files'
# times in the build context).
COPY migrations migrations
COPY crates crates
RUN find crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p kv-server -p kv-sweeper \
 && mkdir -p /data

# Run on distroless: glibc and libgcc, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kv-server /src/target/release/kv-sweeper /usr/local/bin/
COPY --from=build --chown=65532:65532 /data /data
ENV DATABASE_URL=/data/kv.sqlite3 \
    KV_BIND=0.0.0.0:8000
WORKDIR /data
VOLUME /data
EXPOSE 8000
USER 65532:65532
# Both binaries drain and exit 0 on SIGTERM, which `docker stop` sends to PID 1 (the binary
# itself: the exec form runs no shell in between).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["kv-server", "--health-check"]
ENTRYPOINT ["kv-server"]
