# The terminator image: the static binary (CGO_ENABLED=0) and CA certificates,
# nothing else. FROM scratch needs no registry. deploy/images/terminator.sh
# builds the binary and the context; the binary's command line picks the role:
#
#   docker run terminator-gw/terminator:dev front -etcd-endpoints http://etcd:2379
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY terminator /terminator
# An empty directory owned by the runtime user: Pebble's default data
# directory (-data /data) when a service runs without -store.
COPY --chown=65532:65532 data /data
# Not root: a numeric uid needs no /etc/passwd.
USER 65532:65532
WORKDIR /data
ENV TERMINATOR_DATA=/data
# The front ("front", "all") listens on loopback by default; in a container
# that is unreachable, so it listens on the container's interfaces.
ENV TERMINATOR_LISTEN=0.0.0.0:8080
ENTRYPOINT ["/terminator"]
CMD ["all"]
