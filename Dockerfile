# The sentio binary in a small runtime image. Build: docker build -t sentio .
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p sentio && cp target/release/sentio /usr/local/bin/sentio

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/sentio --create-home sentio
COPY --from=build /usr/local/bin/sentio /usr/local/bin/sentio
USER sentio
WORKDIR /var/lib/sentio
ENTRYPOINT ["sentio"]
CMD ["--help"]
