#!/usr/bin/env bash
# systemd.sh builds the image the systemd test boots (make test-systemd): the
# fleet's base image (base.sh: Debian bookworm with etcd, whose own unit
# starts it on 127.0.0.1:2379) with systemd as init, iproute2 (ss) and curl.
#
# The tag carries a hash of the base image's tag and of this file, so a
# changed recipe builds a new image and an unchanged one is reused. Prints
# the tag on stdout; logs go to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
base=$("$here/base.sh")
repo=${SYSTEMD_REPO:-terminator-systemd}
tag="$repo:$( (echo "$base"; cat "$here/systemd.sh") | sha256sum | cut -c1-12)"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "systemd image $tag present: reused" >&2
  echo "$tag"
  exit 0
fi

ctx=$(mktemp -d /tmp/terminator-systemd.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
# systemd is PID 1; the units a container has no use for are masked (no
# getty, no udev: /dev is the engine's). / is made shared first, as systemd
# does itself outside a container: a unit's credentials are mounted in a
# namespace of their own and reach the unit only through shared propagation
# (on a private /, $CREDENTIALS_DIRECTORY is an empty directory).
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $base
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd systemd-sysv iproute2 curl >/dev/null \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* \\
 && systemctl mask getty.target systemd-udevd.service systemd-udev-trigger.service systemd-logind.service console-getty.service \\
 && systemctl enable etcd.service
STOPSIGNAL SIGRTMIN+3
CMD ["/bin/sh", "-c", "mount --make-rshared / && exec /lib/systemd/systemd"]
DOCKERFILE
start=$(date +%s)
docker build -q -t "$tag" "$ctx" >&2
echo "systemd.sh: built $tag in $(($(date +%s) - start))s" >&2
echo "$tag"
