#!/usr/bin/env bash
# Installs the system programs the test suite drives for real, when they are missing:
#   promtool, prometheus (Debian package prometheus), amtool, alertmanager
#   (prometheus-alertmanager), initdb/pg_ctl (postgresql), systemd-analyze and
#   systemd-sysusers (systemd; used offline, no running systemd needed), chromium (the browser
#   tests drive it headless through Playwright, which never downloads a browser of its own).
# On machines without apt-get it says what to install and exits non-zero.
set -euo pipefail

need=()
{ command -v promtool && command -v prometheus; } >/dev/null || need+=(prometheus)
# Debian names the server prometheus-alertmanager; upstream releases call it alertmanager.
{ command -v amtool && { command -v prometheus-alertmanager || command -v alertmanager; }; } \
  >/dev/null || need+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v chromium >/dev/null || need+=(chromium)
if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  need+=(postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${need[*]} (install them with your package manager, or put" \
    "promtool, prometheus, amtool and alertmanager from the Prometheus project's release" \
    "archives on PATH, and a chromium)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
# The Debian packages start their services on install; the tests start their own instances.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for svc in prometheus prometheus-alertmanager prometheus-node-exporter postgresql; do
  $sudo systemctl stop "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
done
