# callstate's image: a static binary on a distroless base, run as non-root,
# the spool (and, without DATABASE_URL, nothing else: the image has no
# PostgreSQL) on the /data volume.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) -t callstate .
#   docker compose up        # with PostgreSQL, see compose.yaml

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.Version=${VERSION} -X main.Commit=${COMMIT}" \
      -o /out/callstate ./cmd/callstate \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/callstate /usr/local/bin/callstate
COPY --from=build --chown=nonroot:nonroot /out/data /data
ENV LISTEN_ADDR=:8080 \
    DATA_DIR=/data \
    SPOOL_DIR=/data/spool \
    LOG_FORMAT=json
VOLUME /data
EXPOSE 8080 5060/udp 5060/tcp
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/callstate", "healthcheck"]
# SIGTERM: callstate finishes within SHUTDOWN_TIMEOUT (15 s); docker waits 10 s
# by default, so run with --stop-timeout 20 (compose.yaml sets stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/callstate"]
CMD ["serve"]
