#!/bin/sh
# nginx in a container (compose, Kubernetes): terminator.conf beside this
# file as it is, but for its upstream line, which lists one terminator at
# 127.0.0.1:8080; here it lists $FRONTS (space-separated host:port), and its
# JSON access log goes to $ACCESS_LOG (default stdout, "off" for none). The main
# nginx.conf is written here too, so the image's own defaults (a default site
# on port 80, its user, its temp paths) play no part. Works in the fleet's
# Debian base image and in the public nginx image (Debian-based tags).
set -eu
site=${SITE_CONF:-/etc/terminator/nginx/terminator.conf}
dir=/tmp/nginx
mkdir -p "$dir"
servers=
for f in ${FRONTS:?FRONTS lists the fronts, e.g. "front1:8080 front2:8080"}; do
  servers="$servers server $f max_fails=1 fail_timeout=2s;"
done
if ! grep -q 'server 127.0.0.1:8080;' "$site"; then
  echo "nginx.sh: $site has no 'server 127.0.0.1:8080;' line to point at the fronts" >&2
  exit 1
fi
log=${ACCESS_LOG:-/dev/stdout}
case $log in
off) logline="access_log off;" ;;
*) logline="access_log $log terminator_json;" ;;
esac
if ! grep -q 'access_log /var/log/nginx/terminator.access.log terminator_json;' "$site"; then
  echo "nginx.sh: $site has no 'access_log /var/log/nginx/terminator.access.log terminator_json;' line to point at \$ACCESS_LOG" >&2
  exit 1
fi
sed -e "s|server 127.0.0.1:8080;|$servers|" \
  -e "s|access_log /var/log/nginx/terminator.access.log terminator_json;|$logline|" "$site" >"$dir/terminator.conf"
cat >"$dir/nginx.conf" <<CONF
user nobody nogroup;
worker_processes ${NGINX_WORKERS:-2};
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/terminator.conf;
}
CONF
nginx -t -q -c "$dir/nginx.conf"
exec nginx -c "$dir/nginx.conf" -g 'daemon off;'
