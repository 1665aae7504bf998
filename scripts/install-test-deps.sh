#!/usr/bin/env bash
# Installs what callstate's tests run against, when it is missing:
# the PostgreSQL server, Kamailio with its presence and TLS modules, sipp,
# Chromium, promtool (package prometheus) for the alert rules,
# docker-compose to validate compose.yaml, baresip (baresip-core, with
# its presence module) as a presence client, and Node.js with npm for the
# tests whose peers are Node programs (SIP.js, webhook receivers).
# Debian/Ubuntu only (apt-get); elsewhere it says what to install.
set -euo pipefail

have_postgres() {
  command -v postgres >/dev/null 2>&1 && return 0
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ] && return 0
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}
have_kamailio_presence() {
  command -v kamailio >/dev/null 2>&1 &&
    compgen -G '/usr/lib/*/kamailio/modules/presence_dialoginfo.so' >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
have_kamailio_presence || missing+=(kamailio kamailio-presence-modules)
compgen -G '/usr/lib/*/kamailio/modules/tls.so' >/dev/null || missing+=(kamailio-tls-modules)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# Node.js and npm (a Node.js build that bundles npm needs no package of its own).
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi
# baresip with its presence module: a PIDF client for the presence agent's tests.
compgen -G '/usr/lib/baresip/modules/presence.so' >/dev/null || missing+=(baresip-core)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "callstate tests need these packages (Debian names): ${missing[*]}" >&2
  echo "install them with your system's package manager and run the tests again" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "installing test dependencies: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a Kamailio service on install; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop kamailio >/dev/null 2>&1 || true; fi
# Nor is Prometheus' own server needed, only its promtool.
if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop prometheus >/dev/null 2>&1 || true; fi
