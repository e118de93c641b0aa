/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bridle.h — the ONE definition of every struct that crosses the kernel
 * boundary between Bridle's eBPF programs and its Rust loader.
 *
 * The Rust mirror is redirector-ebpf/src/abi.rs. A layout test there compares
 * size, alignment and every field offset against what the host C compiler
 * says about this file (build.rs compiles a probe program), so a change here
 * without the matching change in abi.rs fails `cargo test`.
 *
 * Conventions:
 *   - IPv4 addresses are __u32 in NETWORK byte order (as in bpf_sock_addr).
 *   - IPv6 addresses are __u32[4] in NETWORK byte order (as in user_ip6).
 *   - Ports are __u16 in HOST byte order (converted in the programs).
 *   - Explicit padding: no implicit holes, so the layout is the same for
 *     clang -target bpf and the host compiler.
 *
 * Only plain __u8..__u64 types: this header is included by the BPF programs
 * (with <linux/types.h>) and by the host-side layout probe.
 */
#ifndef BRIDLE_H
#define BRIDLE_H

#include <linux/types.h>

/* "BRDL": the loader writes this into bridle_config.magic. A zeroed config
 * slot (array maps start zeroed) means "not configured": refuse everything. */
#define BRIDLE_CONFIG_MAGIC 0x4252444cu
/* Bumped whenever a struct below changes shape, or what the programs do
 * changes: pins left by an older Bridle are then refused, never re-adopted
 * with their old programs (4: sock_create allows only TCP and UDP; host
 * mode adds the loopback-only packet filters. 5: exempt_tgid_cgroup, and
 * appliance mode's packet filters). */
#define BRIDLE_ABI_VERSION 5u

/* bridle_config.flags */
/* Appliance mode: the programs sit on the cgroup root and guard only sockets
 * whose network namespace is in the guarded_netns map, except those of tasks
 * under Bridle's own cgroup (exempt_cgroup). Without the flag (host mode)
 * the cgroup the programs are attached to is the whole selection. */
#define BRIDLE_SELECT_NETNS 1u

/* Guarded network namespaces (appliance mode; one per daemon start). */
#define BRIDLE_MAX_NETNS 64

/* Entries in the kernel verdict cache. */
#define BRIDLE_VERDICT_ENTRIES 4096

/* Ports guarded sockets may never reach (console, API, metrics, proxy
 * admin, the proxy and resolver listeners themselves). 0 = unused slot. */
#define BRIDLE_MAX_OWN_PORTS 16
/* Ports of Bridle's agent-facing listeners (the MCP gateway): a guarded TCP
 * connect to one of them on loopback goes there directly, unredirected. */
#define BRIDLE_MAX_GATEWAY_PORTS 4

/* Entries in the original-destination maps (LRU: oldest evicted first). */
#define BRIDLE_ORIG_DST_ENTRIES 65536

/* Where a redirected connect was originally going. */
struct bridle_orig_dst {
	__u32 ip4;        /* family == AF_INET: network order */
	__u32 ip6[4];     /* family == AF_INET6: network order (may be v4-mapped) */
	__u16 port;       /* host order */
	__u16 family;     /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;       /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 _pad[3];
	__u32 pid;        /* tgid of the process that called connect() */
	__u64 cgroup_id;  /* v2 cgroup id (inode) of that process */
};

/* Key of the by-peer map: the redirected socket's own local address and
 * port, as the proxy sees them from accept() (getpeername on its side).
 * IPv4 is stored v4-mapped (::ffff:a.b.c.d) so one key type serves both. */
struct bridle_peer_key {
	__u32 ip6[4];     /* network order */
	__u16 port;       /* host order */
	__u16 _pad;
};

/* Key of the verdict cache: a destination every connect to which policy
 * denies, whatever name or process it comes with. */
struct bridle_dest_key {
	__u32 ip6[4];     /* network order; IPv4 stored v4-mapped */
	__u16 port;       /* host order */
	__u8 proto;       /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 _pad;
};

/* Value of the verdict cache. An entry refuses connects only while its
 * generation equals bridle_config.verdict_generation: a policy reload bumps
 * that, and every older entry is dead at once. */
struct bridle_verdict {
	__u64 generation;
};

/* The single entry (key 0) of the config array map, written by the loader. */
struct bridle_config {
	__u32 magic;           /* BRIDLE_CONFIG_MAGIC, else fail closed */
	__u32 abi_version;     /* BRIDLE_ABI_VERSION */
	__u32 proxy_ip4;       /* network order; TCP over IPv4 goes here */
	__u32 proxy_ip6[4];    /* network order; all-zero = no IPv6 proxy: refuse */
	__u32 dns_ip4;         /* network order; UDP/53 over IPv4 goes here */
	__u32 dns_ip6[4];      /* network order; all-zero = no IPv6 resolver: refuse */
	__u16 proxy_port;      /* host order */
	__u16 dns_port;        /* host order */
	__u16 own_ports[BRIDLE_MAX_OWN_PORTS]; /* host order, 0 = unused */
	__u32 flags;           /* BRIDLE_SELECT_NETNS */
	__u32 exempt_level;    /* depth of exempt_cgroup below the root (root = 0) */
	__u32 _pad;
	__u64 exempt_cgroup;   /* Bridle's own cgroup id (appliance mode), 0 = none */
	__u64 verdict_generation; /* live generation of the verdict cache */
	__u16 gateway_ports[BRIDLE_MAX_GATEWAY_PORTS]; /* host order, 0 = unused */
	__u32 exempt_tgid;     /* one more exempt process (init pid namespace): the
				* container runtime, whose embedded DNS answers
				* from inside the netns; 0 = none */
	__u32 _pad2;
	__u64 exempt_tgid_cgroup; /* exempt_tgid's cgroup v2 id: both must match,
				   * so a process that reuses the pid of a
				   * restarted runtime is not exempt */
};

#endif /* BRIDLE_H */
