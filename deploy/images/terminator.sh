#!/usr/bin/env bash
# terminator.sh builds the terminator image from the working tree: a static
# build of ./cmd/terminator in an image FROM scratch (terminator.Dockerfile).
# Prints the tag on stdout; logs go to stderr.
#
#   TERMINATOR_IMAGE=terminator-gw/terminator:dev deploy/images/terminator.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
tag=${TERMINATOR_IMAGE:-terminator-gw/terminator:dev}
certs=${CA_CERTIFICATES:-/etc/ssl/certs/ca-certificates.crt}
if [ ! -r "$certs" ]; then
  echo "terminator.sh: no CA bundle at $certs (apt-get install ca-certificates, or set CA_CERTIFICATES)" >&2
  exit 1
fi

ctx=$(mktemp -d /tmp/terminator-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
(cd "$repo_root" && CGO_ENABLED=0 GOOS=linux go build -ldflags='-s -w' -o "$ctx/terminator" ./cmd/terminator) >&2
cp "$certs" "$ctx/ca-certificates.crt"
mkdir "$ctx/data"
old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
docker build -q -f "$here/terminator.Dockerfile" -t "$tag" "$ctx" >&2
# The image this tag named before is ours and now unnamed: remove it
# (docker refuses while a container still uses it, which is fine).
if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
  docker image rm "$old" >/dev/null 2>&1 || true
fi
echo "$tag"
