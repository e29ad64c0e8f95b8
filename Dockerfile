# Stampede from source, for machines that can pull base images:
#   docker build -t stampede:local .
# Offline (no image can be pulled), build the same image from a local binary instead:
#   scripts/build-images
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin stampede \
    && cp target/release/stampede /usr/local/bin/stampede

FROM debian:bookworm-slim
COPY --from=build /usr/local/bin/stampede /usr/local/bin/stampede
RUN mkdir -p /results && chmod 1777 /tmp
ENV HOME=/tmp
WORKDIR /tmp
EXPOSE 7400/udp 8089/tcp
ENTRYPOINT ["/usr/local/bin/stampede"]
CMD ["--help"]
