# Parley container image: build with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -f deploy/Containerfile -t parley .        (from the repository root)
# The image has no PostgreSQL: give it an external database (PARLEY_DATABASE_URL), as
# deploy/compose.yaml does.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY tools/loadgen/Cargo.toml tools/loadgen/Cargo.toml
COPY src src
COPY migrations migrations
COPY config config
COPY tools/loadgen/src tools/loadgen/src
RUN cargo build --release --locked --bin parley

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system parley \
 && useradd --system --gid parley --home-dir /var/lib/parley --create-home --shell /usr/sbin/nologin parley
COPY --from=build /src/target/release/parley /usr/local/bin/parley
COPY config/production.example.toml /etc/parley/parley.toml
USER parley
WORKDIR /var/lib/parley
ENV PARLEY_CONFIG=/etc/parley/parley.toml \
    PARLEY_DATA_DIR=/var/lib/parley \
    PARLEY_HTTP_ADDR=0.0.0.0:8080 \
    PARLEY_LOG_FORMAT=json
# REST, XMPP (STARTTLS), XMPP (direct TLS), XMPP over WebSocket.
EXPOSE 8080 5222 5223 5291
HEALTHCHECK --interval=10s --timeout=3s CMD ["/usr/local/bin/parley", "--version"]
ENTRYPOINT ["/usr/local/bin/parley"]
CMD ["serve"]
