# gatewatch container image: build with the Rust toolchain, run from a slim Debian base as a non-root
# user that writes nothing to disk (works with a read-only root filesystem).
#   docker build -t gatewatch .
# GeoIP databases, feeds and custom rules are mounted from volumes (see deploy/helm/gatewatch).

FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin gatewatch

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 gatewatch \
    && useradd --uid 10001 --gid gatewatch --no-create-home --shell /usr/sbin/nologin gatewatch
WORKDIR /opt/gatewatch
COPY --from=build /src/target/release/gatewatch /usr/local/bin/gatewatch
COPY config/default.toml ./config/default.toml
COPY rules ./rules
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/gatewatch"]
CMD ["run"]
