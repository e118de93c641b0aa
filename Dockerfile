# Bridle's appliance image: `bridle up` guarding every container that joins
# its network namespace (see compose.yaml).
#
# The base images are build arguments so a machine without registry access
# can build from local images (the Docker test suite imports a debootstrap'd
# bookworm, scripts/docker/images.sh). BUILDER_IMAGE needs a Rust toolchain
# of at least the workspace's rust-version.
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# Only the manifests, so the dependency layer below is rebuilt only when
# they change (this stage reruns on every source change; it is cheap).
FROM ${BUILDER_IMAGE} AS manifests
COPY . /src
RUN mkdir /manifests && cd /src \
 && find . -path ./target -prune -o \( -name Cargo.toml -o -name Cargo.lock \) -print \
    | while read -r f; do install -D -m 0644 "$f" "/manifests/$f"; done

FROM ${BUILDER_IMAGE} AS build
# clang + libbpf-dev + linux-libc-dev: redirector-ebpf's build.rs compiles
# the eBPF programs with clang -target bpf. Installed only when missing, so
# a builder image that already has them needs no package mirror.
RUN if ! command -v clang >/dev/null || [ ! -e /usr/include/bpf/bpf_helpers.h ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends clang libbpf-dev linux-libc-dev \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
ARG CARGO_PROFILE=release
COPY --from=manifests /manifests/ /src/
COPY docker/stub-sources.sh /usr/local/bin/stub-sources
# Every dependency, compiled against empty stand-ins for Bridle's crates.
RUN sh /usr/local/bin/stub-sources && cargo build --locked --profile "${CARGO_PROFILE}" --bin bridle
COPY . .
# The real sources are older than the stand-ins' build: make them newer.
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --locked --profile "${CARGO_PROFILE}" --bin bridle \
 && install -D -m 0755 "target/$( [ "${CARGO_PROFILE}" = dev ] && echo debug || echo "${CARGO_PROFILE}" )/bridle" /out/bridle

FROM ${BASE_IMAGE}
# ca-certificates: the system roots Bridle verifies upstream servers with.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /out/bridle /usr/local/bin/bridle
COPY policies/default /etc/bridle/policies
COPY docker/bridle.toml /etc/bridle/bridle.toml
# The CA key (Bridle only), the public trust bundle (shared read-only with
# agents) and the audit log are volumes in compose.yaml.
# No VOLUME for the trust directory: without the shared volume mounted
# there, `bridle up` refuses to start instead of writing where no agent looks.
VOLUME ["/var/lib/bridle/ca", "/var/lib/bridle/audit", "/var/lib/bridle/state"]
# MCP tool pins (bridle mcp tools) live under $XDG_STATE_HOME/bridle.
ENV XDG_STATE_HOME=/var/lib/bridle/state
HEALTHCHECK --interval=2s --timeout=6s --start-period=2s --retries=30 CMD ["bridle", "status", "--ready"]
ENTRYPOINT ["bridle"]
CMD ["up", "--config", "/etc/bridle/bridle.toml", "--policies", "/etc/bridle/policies", "--trust-dir", "/var/lib/bridle/trust"]
