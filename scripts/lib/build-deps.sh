# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/bench/common.sh: the Debian
# packages building Bridle needs that this machine lacks, one per line.
# clang and the eBPF headers (<bpf/bpf_helpers.h> from libbpf-dev,
# <linux/bpf.h> from linux-libc-dev) build redirector-ebpf's programs; gcc
# is the linker (and builds the benches' floor relay).
build_packages_missing() {
  command -v clang >/dev/null 2>&1 || echo clang
  command -v cc >/dev/null 2>&1 || echo gcc
  [[ -f /usr/include/bpf/bpf_helpers.h && -f /usr/include/linux/bpf.h ]] || printf '%s\n' libbpf-dev linux-libc-dev
}
