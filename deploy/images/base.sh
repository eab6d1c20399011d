#!/usr/bin/env bash
# base.sh builds the fleet's base image offline: a Debian bookworm root
# filesystem made with debootstrap (minbase) with etcd, nginx, PostgreSQL and
# Prometheus installed into it, imported with `docker import`. One image serves
# all four roles; compose picks the program with each service's entrypoint.
#
# The tag carries a hash of this file, so a changed recipe builds a new image
# and an unchanged one is reused. Prints the tag on stdout; logs go to stderr.
#
#   deploy/images/base.sh            # build unless present
#   DEBIAN_MIRROR=http://... deploy/images/base.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=${BASE_REPO:-terminator-fleet-base}
tag="$repo:$(sha256sum "$here/base.sh" | cut -c1-12)"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=(ca-certificates etcd-server etcd-client nginx postgresql prometheus)

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag present: reused" >&2
  echo "$tag"
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base.sh: debootstrap is not installed (apt-get install debootstrap)" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "base.sh: debootstrap needs root (it creates device nodes and chroots)" >&2
  exit 1
fi

root=$(mktemp -d /tmp/terminator-base.XXXXXX)
chmod 0755 "$root" # it becomes the image's /: mktemp's 0700 would lock out every non-root user
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

start=$(date +%s)
echo "base.sh: debootstrap bookworm minbase from $mirror into $root" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >&2

# Nothing starts while we install: no init runs in a chroot, and a started
# postgres would outlive the build. No default cluster either: the
# container's entrypoint creates one in its own data directory.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
mkdir -p "$root/etc/postgresql-common/createcluster.d"
echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.d/no-main-cluster.conf"
# Keep the image small: no docs, man pages or translations.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/info/*
CFG

mount -t proc proc "$root/proc"
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends "${packages[@]}" >&2
umount "$root/proc"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/usr/sbin/policy-rc.d

# postgres's entrypoint keeps its cluster here (named like the public image's).
install -d -o "$(chroot "$root" id -u postgres)" -g "$(chroot "$root" id -g postgres)" -m 0700 "$root/var/lib/postgresql/data"

tar --numeric-owner -C "$root" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap bookworm minbase + ${packages[*]}" \
    - "$tag" >&2
echo "base.sh: built $tag in $(($(date +%s) - start))s" >&2
echo "$tag"
