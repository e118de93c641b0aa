#!/usr/bin/env bash
# Local images for the Docker end-to-end suite, built without a registry:
#
#   bridle-test-base:bookworm   debootstrap --variant=minbase of Debian bookworm,
#                               imported with `docker import` (the base image
#                               Dockerfiles take as BASE_IMAGE)
#   bridle-test-rust:bookworm   the base + clang/libbpf-dev + this machine's
#                               Rust toolchain (the Dockerfile's BUILDER_IMAGE)
#
# Both are cached: a tag that exists is reused. The debootstrap tarball is
# kept under $BRIDLE_DOCKER_CACHE (default /var/cache/bridle-docker) so even
# a `docker system prune` costs only an import. Debian's mirror is one of the
# registries these machines reach; nothing else is downloaded.
#
# Usage: scripts/docker/images.sh            (prints the two tags)
#        scripts/docker/images.sh --rebuild  (drops the cached images first)
set -euo pipefail

BASE_TAG=bridle-test-base:bookworm
RUST_TAG=bridle-test-rust:bookworm
CACHE=${BRIDLE_DOCKER_CACHE:-/var/cache/bridle-docker}
MIRROR=${BRIDLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'images: %s\n' "$*" >&2; }

if [[ ${1:-} == --rebuild ]]; then
    docker image rm -f "$RUST_TAG" "$BASE_TAG" >/dev/null 2>&1 || true
    rm -f "$CACHE/base-bookworm.tar"
fi

have() { docker image inspect "$1" >/dev/null 2>&1; }

# This machine's extra roots (e.g. a registry proxy's CA): images built here
# trust them as the host does, or their package installs (cargo, pip) fail.
# An image made with other roots is rebuilt.
LOCAL_CAS=(/usr/local/share/ca-certificates/*.crt)
[[ -e ${LOCAL_CAS[0]} ]] || LOCAL_CAS=()
CA_SUM=$(cat /dev/null "${LOCAL_CAS[@]}" | sha256sum | cut -c1-16)
label() { docker image inspect -f '{{ index .Config.Labels "bridle.local-ca" }}' "$1" 2>/dev/null || true; }
if have "$BASE_TAG" && [[ $(label "$BASE_TAG") != "$CA_SUM" ]]; then
    log "this machine's extra CAs changed: rebuilding the images"
    docker image rm -f "$RUST_TAG" "$BASE_TAG" >/dev/null 2>&1 || true
fi

base_image() {
    have "$BASE_TAG" && return
    mkdir -p "$CACHE"
    local tar="$CACHE/base-bookworm.tar"
    if [[ ! -s $tar ]]; then
        local root
        root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        log "debootstrap bookworm (minbase) into $root"
        debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
            tail -20 "$CACHE/debootstrap.log" >&2
            rm -rf "$root"
            exit 1
        }
        # What a registry's debian:bookworm-slim trims: apt lists and caches.
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
        tar -C "$root" -cf "$tar.part" .
        mv "$tar.part" "$tar"
        rm -rf "$root"
    fi
    log "importing $BASE_TAG"
    docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' "$tar" "$BASE_TAG-rootfs" >/dev/null
    local ctx
    ctx=$(mktemp -d "$CACHE/base-ctx.XXXXXX")
    mkdir -p "$ctx/cas"
    ((${#LOCAL_CAS[@]})) && cp "${LOCAL_CAS[@]}" "$ctx/cas/"
    # Installing ca-certificates later (update-ca-certificates) adds them.
    printf 'FROM %s\nCOPY cas/ /usr/local/share/ca-certificates/\nLABEL bridle.local-ca=%s\n' \
        "$BASE_TAG-rootfs" "$CA_SUM" >"$ctx/Dockerfile"
    build -t "$BASE_TAG" "$ctx"
    rm -rf "$ctx"
    docker image rm "$BASE_TAG-rootfs" >/dev/null
}

rust_image() {
    have "$RUST_TAG" && return
    local sysroot ctx
    sysroot=$(rustc --print sysroot)
    ctx=$(mktemp -d "$CACHE/rust-ctx.XXXXXX")
    trap 'rm -rf "$ctx"' RETURN
    log "staging the Rust toolchain from $sysroot"
    mkdir -p "$ctx/rust"
    # Compiler, cargo and the standard library; docs, sources and tools the
    # build does not run stay behind.
    cp -a "$sysroot/lib" "$sysroot/libexec" "$ctx/rust/" 2>/dev/null || cp -a "$sysroot/lib" "$ctx/rust/"
    mkdir -p "$ctx/rust/bin"
    cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$ctx/rust/bin/"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_TAG
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev clang libbpf-dev linux-libc-dev pkg-config \\
 && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
ENV PATH=/usr/local/rust/bin:\$PATH CARGO_HOME=/usr/local/cargo
RUN rustc --version && cargo --version
DOCKERFILE
    log "building $RUST_TAG"
    build -t "$RUST_TAG" "$ctx"
}

# Quiet unless it fails (the legacy builder's deprecation notice included).
build() {
    local out
    out=$(docker build "$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

base_image
rust_image
echo "$BASE_TAG $RUST_TAG"
