#!/usr/bin/env bash
# Installs the system tools the tests and benchmarks run against (curl, openssl, jq, wget, nginx, wrk, iproute2,
# headless Chromium and its WebDriver for the dashboard's browser test, and PostgreSQL's server binaries: the
# tests start a private cluster of their own), where they are missing and this machine can install them, and
# podman with what builds the container image (scripts/image.sh deps). Tests
# that need a missing tool skip, saying so.
set -u
bash "$(dirname "${BASH_SOURCE[0]}")/image.sh" deps || echo "sysdeps: the container image test will skip" >&2
need=()
for pair in curl:curl openssl:openssl jq:jq wget:wget nginx:nginx-light wrk:wrk ip:iproute2 taskset:util-linux \
            chromium:chromium chromedriver:chromium-driver; do
  tool=${pair%%:*}; pkg=${pair#*:}
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need+=("$pkg")
done
# PostgreSQL: Debian keeps initdb and pg_ctl off PATH, in /usr/lib/postgresql/N/bin.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "sysdeps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || echo "sysdeps: could not install ${need[*]}; the tests that need them will skip" >&2
else
  echo "sysdeps: missing ${need[*]} and cannot install them here (not root, or no apt-get); the tests that need them will skip" >&2
fi
exit 0
