# syntax=docker/dockerfile:1.7
# Container image with both binaries: `ciba-api` (the default command) and `ciba-worker`.
#
#   docker build -t ciba:0.1.0 .
#   docker run --rm -p 8080:8080 ciba:0.1.0                  # SQLite in /var/lib/ciba
#   docker run --rm ciba:0.1.0 ciba-worker                   # the worker
#
# Build stage: the workspace's locked dependencies, release profile. The cache mounts keep the
# registry and target/ between builds (BuildKit), so a source change rebuilds only our crates.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends make perl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ciba-api -p ciba-worker \
 && install -D -m 0755 target/release/ciba-api /out/ciba-api \
 && install -D -m 0755 target/release/ciba-worker /out/ciba-worker

# Runtime stage: glibc (libpq and OpenSSL are linked into the binaries), CA certificates for outbound TLS
# (external issuers' JWKS, ping notifications). No shell tools are needed at run time.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ciba \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ciba --shell /usr/sbin/nologin ciba \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/ciba
COPY --from=build /out/ciba-api /out/ciba-worker /usr/local/bin/

# Container defaults: listen on every interface; the SQLite default lives in the data volume.
# PostgreSQL deployments set DATABASE_URL and CIBA_KEY_ENCRYPTION_KEY (see README.md).
ENV CIBA_LISTEN=0.0.0.0:8080 \
    CIBA_WORKER_LISTEN=0.0.0.0:9091 \
    DATABASE_URL=sqlite:///var/lib/ciba/ciba.db \
    CIBA_LOG_FORMAT=json
WORKDIR /var/lib/ciba
VOLUME ["/var/lib/ciba"]
USER 10001:10001
EXPOSE 8080 9091
# Both binaries handle SIGTERM themselves (graceful shutdown), so they run as PID 1 directly.
STOPSIGNAL SIGTERM
CMD ["ciba-api"]
