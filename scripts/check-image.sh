#!/usr/bin/env bash
# Runs callstate as the container image runs it, where no container engine
# is at hand: the static binary (CGO_ENABLED=0, as the Dockerfile builds it)
# alone in an empty root, as an unprivileged user, against a PostgreSQL on
# loopback; checks that it serves, answers its own healthcheck, and stops
# on SIGTERM. Needs root (chroot) and a DATABASE_URL, or starts nothing
# and says so.
#
#   scripts/check-image.sh build   (buildah, no registry needed)
#
# builds the image with buildah (chroot isolation, vfs storage: no daemon,
# no privileges beyond root) from the Dockerfile's final stage as written,
# on stand-ins for what it pulls: the build stage's output is the binary
# built here with the Dockerfile's flags, and the distroless base is an
# empty root with its nonroot user (65532). It prints the image's size and
# configuration and runs `version` and `check-config` in it as nonroot.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = build ]; then
  export STORAGE_DRIVER=vfs
  ctx=$(mktemp -d)
  ctr=
  trap '[ -n "$ctr" ] && buildah rm "$ctr" >/dev/null; buildah rmi localhost/callstate:check >/dev/null 2>&1; rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/out/data" "$ctx/base/etc" "$ctx/base/tmp"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X main.Version=check -X main.Commit=$(git rev-parse HEAD)" \
    -o "$ctx/out/callstate" ./cmd/callstate
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/base/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/base/etc/group"
  chmod 1777 "$ctx/base/tmp"
  {
    printf 'FROM scratch AS base\nCOPY base/ /\nFROM scratch AS build\nCOPY out/ /out/\n'
    # The Dockerfile's last stage, its FROM on the stand-in base.
    awk 'f; /^FROM / && !/ AS build$/ {f=1; print "FROM base"}' Dockerfile
  } >"$ctx/Containerfile"
  start=$(date +%s)
  buildah bud --isolation chroot --format docker -q -f "$ctx/Containerfile" -t localhost/callstate:check "$ctx" >/dev/null
  echo "== built in $(($(date +%s) - start)) s: $(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' localhost/callstate:check)"
  echo "== config: $(buildah inspect --format 'user={{.Docker.Config.User}} entrypoint={{.Docker.Config.Entrypoint}} cmd={{.Docker.Config.Cmd}} volumes={{.Docker.Config.Volumes}} ports={{.Docker.Config.ExposedPorts}} healthcheck={{.Docker.Config.Healthcheck.Test}}' localhost/callstate:check)"
  ctr=$(buildah from localhost/callstate:check)
  echo "== version: $(buildah run --isolation chroot --user nonroot "$ctr" -- /usr/local/bin/callstate version)"
  buildah run --isolation chroot --user nonroot "$ctr" -- /usr/local/bin/callstate check-config >/dev/null
  echo "== check-config in the image: ok"
  exit 0
fi
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL on loopback}"
port=${PORT:-18390}
root=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/data" "$root/tmp"
chmod 0755 "$root" "$root/usr" "$root/usr/local" "$root/usr/local/bin"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/data"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$root/usr/local/bin/callstate" ./cmd/callstate
echo "== binary: $(file -b "$root/usr/local/bin/callstate" 2>/dev/null || echo static)"
echo "== root holds: $(cd "$root" && find . -type f | tr '\n' ' ')"
run() {
  env -i LISTEN_ADDR=127.0.0.1:$port DATA_DIR=/data SPOOL_DIR=/data/spool LOG_FORMAT=json \
    DATABASE_URL="$DATABASE_URL" SIPGATE_VERIFY_SIGNATURE=false \
    /usr/sbin/chroot --userspec=65532:65532 "$root" /usr/local/bin/callstate "$@"
}
run version
if run healthcheck 2>/dev/null; then
  echo "something answers on 127.0.0.1:$port already; set PORT" >&2
  exit 1
fi
# env and chroot exec what they run: $! is callstate's own pid.
env -i LISTEN_ADDR=127.0.0.1:$port DATA_DIR=/data SPOOL_DIR=/data/spool LOG_FORMAT=json \
  DATABASE_URL="$DATABASE_URL" SIPGATE_VERIFY_SIGNATURE=false \
  /usr/sbin/chroot --userspec=65532:65532 "$root" /usr/local/bin/callstate serve \
  > "$root/tmp/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  run healthcheck 2>/dev/null && break
  sleep 0.1
done
run healthcheck
echo "== healthcheck: ok"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
  --data 'event=newCall&callId=image-check&from=1&to=2' "http://127.0.0.1:$port/webhooks/sipgate")
echo "== newCall: $code"
[ "$code" = 200 ]
kill -TERM "$pid" || { echo "callstate had exited:"; cat "$root/tmp/log"; exit 1; }
status=0
wait "$pid" || status=$?
pid=""
echo "== stopped on SIGTERM: exit $status"
echo "== its log: $(grep -c '"level"' "$root/tmp/log") JSON lines, the last: $(tail -1 "$root/tmp/log")"
[ "$status" = 0 ]
