/* SPDX-License-Identifier: Apache-2.0 */
/*
 * redirect.bpf.c — Bridle's cgroup egress capture.
 *
 * Which sockets are guarded:
 *   host mode      attached to the session's cgroup v2 directory: every
 *                  socket of a process in that subtree.
 *   appliance mode (BRIDLE_SELECT_NETNS) attached to the cgroup root: every
 *                  socket in a network namespace listed in guarded_netns,
 *                  except those of tasks under Bridle's own cgroup
 *                  (exempt_cgroup, compared by ancestor id so Bridle's
 *                  children are exempt too). Other sockets are untouched.
 *
 * What guarded sockets get:
 *   connect4/6     TCP  -> remember the original destination (keyed by socket
 *                          cookie), rewrite to the proxy listener, unless the
 *                          verdict cache says every connect there is denied:
 *                          then ECONNREFUSED before any packet.
 *                  TCP/53 -> the resolver's TCP listener (DNS over TCP to any
 *                          server is answered by Bridle).
 *                  UDP/53 (connected) -> remember, rewrite to the resolver.
 *                  anything else (other UDP, ICMP ping sockets, SCTP, ...)
 *                  -> refused (EPERM).
 *                  Bridle's own ports -> refused (EPERM), before any packet.
 *   sendmsg4/6     UDP/53 -> resolver; all other UDP refused (QUIC, exfil).
 *   recvmsg4/6     replies from the resolver carry the original server as
 *                  their source (resolvers that check it accept them).
 *   getpeername4/6 redirected sockets see their original peer.
 *   sock_create    only TCP (and MPTCP) stream and UDP datagram sockets:
 *                  SOCK_RAW, SOCK_PACKET, ICMP "ping" sockets (SOCK_DGRAM,
 *                  IPPROTO_ICMP/ICMPV6: no sendmsg hook runs for them, and
 *                  Docker lets any gid open them), UDP-Lite, SCTP and the
 *                  rest are refused (AF_INET/AF_INET6).
 *                  AF_PACKET never reaches this hook: the kernel runs
 *                  cgroup/sock_create only from inet_create/inet6_create
 *                  (measured on 6.18: a root AF_PACKET socket in the guarded
 *                  cgroup is created). Packet sockets need CAP_NET_RAW, which
 *                  the guarded command must not have; the family check below
 *                  stays for kernels that ever widen the hook.
 *   cgroup_skb     a guarded socket's packets may only go to, and come
 *     egress,      from, loopback (where the proxy, the resolver and the
 *     ingress      gateway listen). Whatever the address hooks never see
 *                  stops here: IP options and IPv6 routing headers that
 *                  send a packet to a first hop other than its (rewritten)
 *                  destination, and SYNs, SYN-ACKs and data of a socket
 *                  that listens and accepts a connection from outside.
 *                  Host mode attaches bridle_egress/ingress to the session
 *                  cgroup; appliance mode bridle_egress_ns/ingress_ns to
 *                  the root, where they select by the packet's socket:
 *                  its namespace, and its cgroup for Bridle's own and the
 *                  container runtime's.
 *   sockops        at TCP_CONNECT_CB (source port now chosen) the original
 *                  destination is copied into a map keyed by the socket's
 *                  local address+port, which is what the proxy sees as the
 *                  peer on accept(). The proxy cannot learn the *client's*
 *                  socket cookie from its accepted socket.
 *
 * Fail closed: the config lives in an array map written by the loader; a
 * zeroed (never written) slot or a wrong ABI version refuses every connect.
 *
 * IPv4-mapped IPv6 (::ffff:a.b.c.d on an AF_INET6 socket) only ever hits
 * connect6/sendmsg6/getpeername6 (tcp_v6_connect hands off to tcp_v4_connect
 * without running the connect4 hook), so those handle it like IPv4 and
 * redirect to ::ffff:<proxy_ip4>.
 *
 * Verifier quirks that bite here (kernel 6.18, clang 14):
 *   - cgroup sock_addr programs may only return 0 (refuse: EPERM) or 1;
 *     getpeername*, getsockname* and recvmsg* programs MUST return 1
 *     (the verifier rejects a possible 0 at load time).
 *   - user_ip6[] and user_port writes must be full 32-bit stores; narrow
 *     (8/16-bit) writes are rejected. Reads may be narrow.
 *   - user_port holds the port in network order in its low 16 bits.
 *   - bpf_sock_ops.local_port is host order; remote_port is network order.
 *   - Map value pointers may be passed straight to bpf_map_update_elem as
 *     the value; no stack copy needed (the struct is 40 bytes anyway).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "bridle.h"

/* Constants from <sys/socket.h>/<netinet/in.h>; libc headers cannot be
 * included with -target bpf. */
#define BRIDLE_AF_INET 2
#define BRIDLE_AF_INET6 10
#define BRIDLE_AF_PACKET 17
#define BRIDLE_SOCK_STREAM 1
#define BRIDLE_SOCK_DGRAM 2
#define BRIDLE_SOCK_RAW 3
#define BRIDLE_SOCK_PACKET 10
#define BRIDLE_IPPROTO_TCP 6
#define BRIDLE_IPPROTO_UDP 17
#define BRIDLE_ETH_P_IP 0x0800
#define BRIDLE_ETH_P_IPV6 0x86DD
#define BRIDLE_IPPROTO_MPTCP 262
#define BRIDLE_DNS_PORT 53
#define BRIDLE_ECONNREFUSED 111

#define REFUSE 0
#define ALLOW 1

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BRIDLE_ORIG_DST_ENTRIES);
	__type(key, __u64); /* socket cookie */
	__type(value, struct bridle_orig_dst);
} orig_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BRIDLE_ORIG_DST_ENTRIES);
	__type(key, struct bridle_peer_key);
	__type(value, struct bridle_orig_dst);
} orig_by_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bridle_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BRIDLE_MAX_NETNS);
	__type(key, __u64); /* netns cookie */
	__type(value, __u8);
} guarded_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BRIDLE_VERDICT_ENTRIES);
	__type(key, struct bridle_dest_key);
	__type(value, struct bridle_verdict);
} verdicts SEC(".maps");

static __always_inline const struct bridle_config *get_config(void)
{
	__u32 key = 0;
	const struct bridle_config *c = bpf_map_lookup_elem(&config, &key);

	if (!c || c->magic != BRIDLE_CONFIG_MAGIC ||
	    c->abi_version != BRIDLE_ABI_VERSION)
		return NULL;
	return c;
}

static __always_inline int forget_and_refuse(struct bpf_sock_addr *ctx);

/* Is this socket guarded? ctx is a bpf_sock_addr or a bpf_sock. */
static __always_inline int selected(const struct bridle_config *c, void *ctx)
{
	__u64 netns;

	if (!(c->flags & BRIDLE_SELECT_NETNS))
		return 1;
	netns = bpf_get_netns_cookie(ctx);
	if (!bpf_map_lookup_elem(&guarded_netns, &netns))
		return 0;
	if (c->exempt_cgroup &&
	    bpf_get_current_ancestor_cgroup_id(c->exempt_level) == c->exempt_cgroup)
		return 0;
	if (c->exempt_tgid &&
	    (__u32)(bpf_get_current_pid_tgid() >> 32) == c->exempt_tgid &&
	    bpf_get_current_cgroup_id() == c->exempt_tgid_cgroup)
		return 0;
	return 1;
}

/* Does the verdict cache deny every connect to this destination? */
static __always_inline int denied(const struct bridle_config *c, __u32 a0,
				  __u32 a1, __u32 a2, __u32 a3, __u16 port,
				  __u8 proto)
{
	struct bridle_dest_key key = {};
	const struct bridle_verdict *v;

	key.ip6[0] = a0;
	key.ip6[1] = a1;
	key.ip6[2] = a2;
	key.ip6[3] = a3;
	key.port = port;
	key.proto = proto;
	v = bpf_map_lookup_elem(&verdicts, &key);
	return v && v->generation == c->verdict_generation;
}

/* What a denied destination looks like to the agent: nobody listening. */
static __always_inline int refuse_connection(struct bpf_sock_addr *ctx)
{
	bpf_set_retval(-BRIDLE_ECONNREFUSED);
	return forget_and_refuse(ctx);
}

static __always_inline int is_own_port(const struct bridle_config *c, __u16 port)
{
#pragma unroll
	for (int i = 0; i < BRIDLE_MAX_OWN_PORTS; i++)
		if (c->own_ports[i] != 0 && c->own_ports[i] == port)
			return 1;
	return 0;
}

static __always_inline int is_gateway_port(const struct bridle_config *c,
					   __u16 port)
{
#pragma unroll
	for (int i = 0; i < BRIDLE_MAX_GATEWAY_PORTS; i++)
		if (c->gateway_ports[i] != 0 && c->gateway_ports[i] == port)
			return 1;
	return 0;
}

static __always_inline int is_tcp(const struct bpf_sock_addr *ctx)
{
	/* MPTCP falls back to TCP against the proxy's plain TCP listener. */
	return ctx->type == BRIDLE_SOCK_STREAM &&
	       (ctx->protocol == BRIDLE_IPPROTO_TCP ||
		ctx->protocol == BRIDLE_IPPROTO_MPTCP);
}

static __always_inline int is_udp(const struct bpf_sock_addr *ctx)
{
	return ctx->type == BRIDLE_SOCK_DGRAM &&
	       ctx->protocol == BRIDLE_IPPROTO_UDP;
}

static __always_inline __u16 dst_port(const struct bpf_sock_addr *ctx)
{
	return bpf_ntohs((__u16)ctx->user_port);
}

static __always_inline int is_v4_mapped(const struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
	       ctx->user_ip6[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int is_loopback6(const struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
	       ctx->user_ip6[2] == 0 && ctx->user_ip6[3] == bpf_htonl(1);
}

static __always_inline int is_zero6(const __u32 a[4])
{
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

/* Record where this socket was going; 0 if the map refused the entry
 * (then the caller refuses the connect: the proxy could not find it). */
static __always_inline int remember(struct bpf_sock_addr *ctx, __u16 family,
				    __u16 port, __u8 proto)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct bridle_orig_dst v = {};

	v.family = family;
	v.port = port;
	v.proto = proto;
	v.pid = bpf_get_current_pid_tgid() >> 32;
	v.cgroup_id = bpf_get_current_cgroup_id();
	if (family == BRIDLE_AF_INET) {
		v.ip4 = ctx->user_ip4;
	} else {
		v.ip6[0] = ctx->user_ip6[0];
		v.ip6[1] = ctx->user_ip6[1];
		v.ip6[2] = ctx->user_ip6[2];
		v.ip6[3] = ctx->user_ip6[3];
	}
	return bpf_map_update_elem(&orig_dst, &cookie, &v, BPF_ANY) == 0;
}

/* A refused connect must not leave an older record behind (a socket can be
 * disconnected with AF_UNSPEC and connected again). */
static __always_inline int forget_and_refuse(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	bpf_map_delete_elem(&orig_dst, &cookie);
	return REFUSE;
}

/* A connect that goes where it was aimed: no older record may stay. */
static __always_inline int forget_and_allow(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	bpf_map_delete_elem(&orig_dst, &cookie);
	return ALLOW;
}

static __always_inline void set_dst6(struct bpf_sock_addr *ctx, __u32 a0,
				     __u32 a1, __u32 a2, __u32 a3, __u16 port)
{
	ctx->user_ip6[0] = a0;
	ctx->user_ip6[1] = a1;
	ctx->user_ip6[2] = a2;
	ctx->user_ip6[3] = a3;
	ctx->user_port = bpf_htons(port);
}

SEC("cgroup/connect4")
int bridle_connect4(struct bpf_sock_addr *ctx)
{
	const struct bridle_config *c = get_config();
	__u16 port = dst_port(ctx);

	if (!c)
		return forget_and_refuse(ctx);
	if (!selected(c, ctx))
		return ALLOW;
	if (is_own_port(c, port))
		return forget_and_refuse(ctx);
	/* Bridle's MCP gateway, on loopback: it decides every message itself. */
	if (is_tcp(ctx) && is_gateway_port(c, port) &&
	    (bpf_ntohl(ctx->user_ip4) >> 24) == 127)
		return forget_and_allow(ctx);

	if (is_tcp(ctx) && port == BRIDLE_DNS_PORT) {
		if (!c->dns_ip4 || !c->dns_port ||
		    !remember(ctx, BRIDLE_AF_INET, port, BRIDLE_IPPROTO_TCP))
			return forget_and_refuse(ctx);
		ctx->user_ip4 = c->dns_ip4;
		ctx->user_port = bpf_htons(c->dns_port);
		return ALLOW;
	}
	if (is_tcp(ctx)) {
		if (denied(c, 0, 0, bpf_htonl(0x0000ffff), ctx->user_ip4, port,
			   BRIDLE_IPPROTO_TCP))
			return refuse_connection(ctx);
		if (!c->proxy_ip4 || !c->proxy_port ||
		    !remember(ctx, BRIDLE_AF_INET, port, BRIDLE_IPPROTO_TCP))
			return forget_and_refuse(ctx);
		ctx->user_ip4 = c->proxy_ip4;
		ctx->user_port = bpf_htons(c->proxy_port);
		return ALLOW;
	}
	/* Connected UDP (glibc's resolver) never reaches sendmsg4. */
	if (is_udp(ctx) && port == BRIDLE_DNS_PORT) {
		if (!c->dns_ip4 || !c->dns_port ||
		    !remember(ctx, BRIDLE_AF_INET, port, BRIDLE_IPPROTO_UDP))
			return forget_and_refuse(ctx);
		ctx->user_ip4 = c->dns_ip4;
		ctx->user_port = bpf_htons(c->dns_port);
		return ALLOW;
	}
	return forget_and_refuse(ctx);
}

SEC("cgroup/connect6")
int bridle_connect6(struct bpf_sock_addr *ctx)
{
	const struct bridle_config *c = get_config();
	__u16 port = dst_port(ctx);
	int mapped = is_v4_mapped(ctx);
	int to_dns;
	__u32 ip4;
	__u16 to_port;

	if (!c)
		return forget_and_refuse(ctx);
	if (!selected(c, ctx))
		return ALLOW;
	if (is_own_port(c, port))
		return forget_and_refuse(ctx);
	if (is_tcp(ctx) && is_gateway_port(c, port) &&
	    (is_loopback6(ctx) ||
	     (mapped && (bpf_ntohl(ctx->user_ip6[3]) >> 24) == 127)))
		return forget_and_allow(ctx);

	if (is_tcp(ctx) && port != BRIDLE_DNS_PORT) {
		if (denied(c, ctx->user_ip6[0], ctx->user_ip6[1],
			   ctx->user_ip6[2], ctx->user_ip6[3], port,
			   BRIDLE_IPPROTO_TCP))
			return refuse_connection(ctx);
		to_dns = 0;
		ip4 = c->proxy_ip4;
		to_port = c->proxy_port;
	} else if (port == BRIDLE_DNS_PORT && (is_udp(ctx) || is_tcp(ctx))) {
		to_dns = 1;
		ip4 = c->dns_ip4;
		to_port = c->dns_port;
	} else {
		return forget_and_refuse(ctx);
	}
	if (!to_port ||
	    !remember(ctx, BRIDLE_AF_INET6, port,
		      is_tcp(ctx) ? BRIDLE_IPPROTO_TCP : BRIDLE_IPPROTO_UDP))
		return forget_and_refuse(ctx);

	if (mapped) {
		if (!ip4)
			return forget_and_refuse(ctx);
		set_dst6(ctx, 0, 0, bpf_htonl(0x0000ffff), ip4, to_port);
		return ALLOW;
	}
	/* Separate branches so the verifier sees constant-offset map reads. */
	if (!to_dns) {
		if (is_zero6(c->proxy_ip6))
			return forget_and_refuse(ctx);
		set_dst6(ctx, c->proxy_ip6[0], c->proxy_ip6[1], c->proxy_ip6[2],
			 c->proxy_ip6[3], to_port);
	} else {
		if (is_zero6(c->dns_ip6))
			return forget_and_refuse(ctx);
		set_dst6(ctx, c->dns_ip6[0], c->dns_ip6[1], c->dns_ip6[2],
			 c->dns_ip6[3], to_port);
	}
	return ALLOW;
}

SEC("cgroup/sendmsg4")
int bridle_sendmsg4(struct bpf_sock_addr *ctx)
{
	const struct bridle_config *c = get_config();

	if (!c)
		return REFUSE;
	if (!selected(c, ctx))
		return ALLOW;
	if (!is_udp(ctx) || dst_port(ctx) != BRIDLE_DNS_PORT || !c->dns_ip4 ||
	    !c->dns_port ||
	    !remember(ctx, BRIDLE_AF_INET, BRIDLE_DNS_PORT, BRIDLE_IPPROTO_UDP))
		return REFUSE;
	ctx->user_ip4 = c->dns_ip4;
	ctx->user_port = bpf_htons(c->dns_port);
	return ALLOW;
}

SEC("cgroup/sendmsg6")
int bridle_sendmsg6(struct bpf_sock_addr *ctx)
{
	const struct bridle_config *c = get_config();

	if (!c)
		return REFUSE;
	if (!selected(c, ctx))
		return ALLOW;
	if (!is_udp(ctx) || dst_port(ctx) != BRIDLE_DNS_PORT || !c->dns_port)
		return REFUSE;
	if (is_v4_mapped(ctx)) {
		if (!c->dns_ip4 || !remember(ctx, BRIDLE_AF_INET6, BRIDLE_DNS_PORT,
					     BRIDLE_IPPROTO_UDP))
			return REFUSE;
		set_dst6(ctx, 0, 0, bpf_htonl(0x0000ffff), c->dns_ip4,
			 c->dns_port);
		return ALLOW;
	}
	if (is_zero6(c->dns_ip6) ||
	    !remember(ctx, BRIDLE_AF_INET6, BRIDLE_DNS_PORT, BRIDLE_IPPROTO_UDP))
		return REFUSE;
	set_dst6(ctx, c->dns_ip6[0], c->dns_ip6[1], c->dns_ip6[2],
		 c->dns_ip6[3], c->dns_port);
	return ALLOW;
}

/* The last DNS server this socket sent to, if the reply comes from the
 * resolver's port. (One socket asking two servers at once sees the later
 * one as both sources: glibc and stub resolvers do not do that.) */
static __always_inline const struct bridle_orig_dst *
dns_reply_origin(struct bpf_sock_addr *ctx, __u16 family)
{
	const struct bridle_config *c = get_config();
	__u64 cookie = bpf_get_socket_cookie(ctx);
	const struct bridle_orig_dst *o;

	if (!c || dst_port(ctx) != c->dns_port)
		return NULL;
	o = bpf_map_lookup_elem(&orig_dst, &cookie);
	if (!o || o->family != family || o->proto != BRIDLE_IPPROTO_UDP)
		return NULL;
	return o;
}

SEC("cgroup/recvmsg4")
int bridle_recvmsg4(struct bpf_sock_addr *ctx)
{
	const struct bridle_orig_dst *o = dns_reply_origin(ctx, BRIDLE_AF_INET);

	if (o) {
		ctx->user_ip4 = o->ip4;
		ctx->user_port = bpf_htons(o->port);
	}
	return ALLOW; /* must be 1 */
}

SEC("cgroup/recvmsg6")
int bridle_recvmsg6(struct bpf_sock_addr *ctx)
{
	const struct bridle_orig_dst *o = dns_reply_origin(ctx, BRIDLE_AF_INET6);

	if (o)
		set_dst6(ctx, o->ip6[0], o->ip6[1], o->ip6[2], o->ip6[3],
			 o->port);
	return ALLOW; /* must be 1 */
}

SEC("cgroup/getpeername4")
int bridle_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	const struct bridle_orig_dst *o = bpf_map_lookup_elem(&orig_dst, &cookie);

	if (o && o->family == BRIDLE_AF_INET) {
		ctx->user_ip4 = o->ip4;
		ctx->user_port = bpf_htons(o->port);
	}
	return ALLOW; /* must be 1 */
}

SEC("cgroup/getpeername6")
int bridle_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	const struct bridle_orig_dst *o = bpf_map_lookup_elem(&orig_dst, &cookie);

	if (o && o->family == BRIDLE_AF_INET6)
		set_dst6(ctx, o->ip6[0], o->ip6[1], o->ip6[2], o->ip6[3],
			 o->port);
	return ALLOW; /* must be 1 */
}

SEC("cgroup/sock_create")
int bridle_sock_create(struct bpf_sock *ctx)
{
	const struct bridle_config *c = get_config();

	if (c && !selected(c, ctx))
		return ALLOW;
	if (ctx->family == BRIDLE_AF_PACKET)
		return REFUSE;
	/* inet_create has resolved protocol 0 to the type's default here. */
	if (ctx->type == BRIDLE_SOCK_STREAM &&
	    (ctx->protocol == BRIDLE_IPPROTO_TCP ||
	     ctx->protocol == BRIDLE_IPPROTO_MPTCP))
		return ALLOW;
	if (ctx->type == BRIDLE_SOCK_DGRAM &&
	    ctx->protocol == BRIDLE_IPPROTO_UDP)
		return ALLOW;
	return REFUSE;
}

/* Whether the packet's peer (its destination leaving, its source
 * arriving) is a loopback address: 127/8, ::1 or ::ffff:127/104. skb data
 * starts at the network header in cgroup_skb programs. */
static __always_inline int peer_is_loopback(struct __sk_buff *skb, int egress)
{
	__u32 a[4];

	if (skb->protocol == bpf_htons(BRIDLE_ETH_P_IP)) {
		/* daddr at 16, saddr at 12 */
		if (bpf_skb_load_bytes(skb, egress ? 16 : 12, a, 4))
			return 0;
		return (bpf_ntohl(a[0]) >> 24) == 127;
	}
	if (skb->protocol == bpf_htons(BRIDLE_ETH_P_IPV6)) {
		/* daddr at 24, saddr at 8 */
		if (bpf_skb_load_bytes(skb, egress ? 24 : 8, a, 16))
			return 0;
		if (a[0] != 0 || a[1] != 0)
			return 0;
		if (a[2] == 0)
			return a[3] == bpf_htonl(1);
		return a[2] == bpf_htonl(0x0000ffff) &&
		       (bpf_ntohl(a[3]) >> 24) == 127;
	}
	return 0;
}

/* Without a config (never written, wrong ABI) only loopback passes:
 * fail closed, like the address hooks. */
static __always_inline int loopback_only(struct __sk_buff *skb, int egress)
{
	const struct bridle_config *c = get_config();

	if (c && (c->flags & BRIDLE_SELECT_NETNS))
		return ALLOW;
	return peer_is_loopback(skb, egress) ? ALLOW : REFUSE;
}

SEC("cgroup_skb/egress")
int bridle_egress(struct __sk_buff *skb)
{
	return loopback_only(skb, 1);
}

SEC("cgroup_skb/ingress")
int bridle_ingress(struct __sk_buff *skb)
{
	return loopback_only(skb, 0);
}

/* Appliance mode: the same filter at the cgroup root, for the packets of
 * sockets in a guarded namespace only. A packet's socket says whose it is:
 * Bridle's own (its cgroup, as an ancestor) and the container runtime's
 * (its cgroup) pass. Without a config the exemptions are unknown, and
 * every guarded socket is kept to loopback: fail closed. Packets of other
 * namespaces, the host's included, pass after one map lookup. Needs
 * bpf_get_netns_cookie on a packet (Linux 6.15): the loader attaches the
 * rest without these where the kernel refuses them, and says so. */
static __always_inline int guarded_loopback_only(struct __sk_buff *skb, int egress)
{
	const struct bridle_config *c = get_config();
	struct bpf_sock *sk = skb->sk;
	__u64 netns;

	/* Only what a guarded process can own (sock_create): TCP and UDP
	 * sockets. The namespace's kernel sockets (neighbour discovery, ICMP
	 * errors, resets for no socket) are raw; time-wait and request
	 * sockets only answer for a socket that was filtered itself. */
	if (!sk)
		return ALLOW;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return ALLOW;
	if (!((sk->type == BRIDLE_SOCK_STREAM && sk->protocol == BRIDLE_IPPROTO_TCP) ||
	      (sk->type == BRIDLE_SOCK_DGRAM && sk->protocol == BRIDLE_IPPROTO_UDP)))
		return ALLOW;
	netns = bpf_get_netns_cookie(skb);
	if (!bpf_map_lookup_elem(&guarded_netns, &netns))
		return ALLOW;
	if (c && c->exempt_cgroup &&
	    bpf_skb_ancestor_cgroup_id(skb, c->exempt_level) == c->exempt_cgroup)
		return ALLOW;
	if (c && c->exempt_tgid_cgroup &&
	    bpf_skb_cgroup_id(skb) == c->exempt_tgid_cgroup)
		return ALLOW;
	return peer_is_loopback(skb, egress) ? ALLOW : REFUSE;
}

SEC("cgroup_skb/egress")
int bridle_egress_ns(struct __sk_buff *skb)
{
	return guarded_loopback_only(skb, 1);
}

SEC("cgroup_skb/ingress")
int bridle_ingress_ns(struct __sk_buff *skb)
{
	return guarded_loopback_only(skb, 0);
}

SEC("sockops")
int bridle_sockops(struct bpf_sock_ops *ctx)
{
	struct bridle_peer_key key = {};
	const struct bridle_orig_dst *o;
	__u64 cookie;

	if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	o = bpf_map_lookup_elem(&orig_dst, &cookie);
	if (!o)
		return 1;
	if (ctx->family == BRIDLE_AF_INET) {
		__u32 a = ctx->local_ip4;

		/* Verifier quirk: without the barrier clang sinks the two
		 * branches' "load ctx field, store key.ip6[3]" into one load
		 * through ctx+off, which the verifier rejects ("dereference of
		 * modified ctx ptr"). Context loads must use a constant offset
		 * from the unmodified ctx pointer. */
		barrier_var(a);
		key.ip6[2] = bpf_htonl(0x0000ffff);
		key.ip6[3] = a;
	} else {
		/* Quirk 2: clang merges adjacent 32-bit ctx reads into one
		 * 64-bit read ("invalid bpf_context access off=48 size=8");
		 * volatile keeps them 32-bit. */
		__u32 a0 = *(volatile __u32 *)&ctx->local_ip6[0];
		__u32 a1 = *(volatile __u32 *)&ctx->local_ip6[1];
		__u32 a2 = *(volatile __u32 *)&ctx->local_ip6[2];
		__u32 a3 = *(volatile __u32 *)&ctx->local_ip6[3];

		key.ip6[0] = a0;
		key.ip6[1] = a1;
		key.ip6[2] = a2;
		key.ip6[3] = a3;
	}
	key.port = (__u16)ctx->local_port;
	bpf_map_update_elem(&orig_by_peer, &key, o, BPF_ANY);
	return 1;
}

/* No GPL-only helper is used (cookie, netns cookie, pid/tgid, cgroup ids,
 * set_retval, map ops), so the project's own licence string is accepted by
 * the kernel. */
char LICENSE[] SEC("license") = "Apache-2.0";
