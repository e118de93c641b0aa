#!/usr/bin/env bash
# `docker compose up` on a machine without registry access: starts dockerd
# if needed (installing docker.io and docker-compose when missing), builds
# the base images locally (scripts/docker/images.sh: debootstrap, cached),
# then runs compose.yaml with them. Arguments go to `docker-compose up`.
#
# Usage (as root): scripts/docker/up.sh [-d] [SERVICE…]
# Where Docker Hub is reachable, plain `docker compose up` does the same.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/docker/dockerd.sh
read -r BASE RUST < <(scripts/docker/images.sh)
export BRIDLE_BASE_IMAGE=$BASE BRIDLE_BUILDER_IMAGE=$RUST
exec docker-compose -f compose.yaml up --build "$@"
