#!/usr/bin/env bash
# Builds the emulator's container image on a machine that reaches no container registry (make image; the image
# test runs it too): a Debian base made with mmdebstrap (localhost/azimds-base:bookworm, built once), azimds and
# its dependencies as wheels built on the host, then `podman build` from the Containerfile with no network.
#
#   scripts/image.sh        build (or find) the image; prints its name, localhost/azimds:in-HASH, on stdout
#   scripts/image.sh deps   only install the tools (mmdebstrap, podman, runc) where they are missing
#
# The image is tagged with a hash of its inputs (Containerfile, source, pyproject, README, this script, the base):
# when an image of the same inputs exists nothing is built. It is also tagged localhost/azimds:latest.
# Environment: PYTHON (makes the wheels; default .venv/bin/python, else python3), CONTAINERS_CONF (default
# scripts/containers.conf, which this machine's podman needs).
# Exit codes: 0 built or found; 1 a step failed (it says which); 3 podman or mmdebstrap is missing and cannot
# be installed here (not root, or no apt-get).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base=localhost/azimds-base:bookworm
repo=localhost/azimds
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/scripts/containers.conf}

say() { echo "image: $*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

install_tools() {
  local need=()
  command -v podman >/dev/null 2>&1 || need+=(podman)
  command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
  command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
  # podman publishes ports through netavark, which writes iptables rules.
  [ -x /usr/lib/podman/netavark ] || command -v netavark >/dev/null 2>&1 || need+=(netavark)
  command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null \
      || die "could not install ${need[*]}" 3
  else
    die "missing ${need[*]} and cannot install them here (not root, or no apt-get)" 3
  fi
}

if [ "${1:-}" = deps ]; then
  install_tools
  exit 0
elif [ $# -gt 0 ]; then
  die "usage: scripts/image.sh [deps]" 2
fi

install_tools
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python=$root/.venv/bin/python; else python=python3; fi
fi

# One build at a time on this machine (several checkouts share podman's storage).
exec 9>"${TMPDIR:-/tmp}/azimds-image.lock"
flock 9

if ! podman image exists "$base"; then
  say "building $base with mmdebstrap (once)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs.tar" >&2 \
    || die "mmdebstrap failed"
  podman import --quiet "$work/rootfs.tar" "$base" >/dev/null || die "podman import failed"
  rm -rf "$work"
fi

cd "$root"
inputs() {
  podman image inspect --format '{{.Id}}' "$base"
  { printf '%s\n' Containerfile .dockerignore pyproject.toml README.md scripts/image.sh
    find src -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*'; } | LC_ALL=C sort | while read -r file; do
    printf '%s %s\n' "$(sha256sum <"$file" | cut -c1-64)" "$file"
  done
}
hash=$(inputs | sha256sum | cut -c1-16)
image=$repo:in-$hash
if podman image exists "$image"; then
  podman tag "$image" "$repo:latest"
  echo "$image"
  exit 0
fi

# The wheels must fit the base's Python (binary wheels are built for one minor version).
want=$(podman run --rm --network none "$base" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
  || die "cannot run $base (podman run failed)"
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "cannot run $python"
[ "$want" = "$have" ] || die "the base has Python $want but $python is $have: set PYTHON to a Python $want"

say "building wheels into build/wheels"
rm -rf build/wheels
"$python" -m pip wheel --quiet --disable-pip-version-check -w build/wheels '.[emulator,postgres]' >&2 \
  || die "pip wheel failed"

say "building $image"
podman build --quiet --format docker --network none --layers=false --file Containerfile \
  --build-arg BASE="$base" --build-arg WHEELS=build/wheels --tag "$image" --tag "$repo:latest" . >/dev/null \
  || die "podman build failed"

# Images of earlier inputs, older than an hour, go (one still used by a container stays).
podman images --filter reference="$repo:in-*" --filter until=1h --format '{{.Repository}}:{{.Tag}}' \
  | grep -vx "$image" | xargs -r podman rmi >/dev/null 2>&1 || true
echo "$image"
