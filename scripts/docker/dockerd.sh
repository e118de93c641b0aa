#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs docker.io, docker-compose (v1,
# what Debian ships) and debootstrap when missing, and starts dockerd in the
# background when nothing listens on /var/run/docker.sock (these machines
# have no systemd to start it). Idempotent.
set -euo pipefail

log() { printf 'dockerd: %s\n' "$*" >&2; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi
log "starting dockerd (log: /var/log/bridle-dockerd.log)"
nohup dockerd >>/var/log/bridle-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
done
tail -20 /var/log/bridle-dockerd.log >&2
log "dockerd did not come up within 30 s"
exit 1
