/* Host-side layout probe for bridle.h, run by build.rs. Prints one line per
 * fact: "<struct> size <n>", "<struct> align <n>", "<struct>.<field> <off>".
 * abi.rs compares these to its #[repr(C)] mirror. */
#include <stddef.h>
#include <stdio.h>

#include "bridle.h"

#define S(t)                                                      \
	printf(#t " size %zu\n", sizeof(struct t));               \
	printf(#t " align %zu\n", _Alignof(struct t))
#define F(t, f) printf(#t "." #f " %zu\n", offsetof(struct t, f))

int main(void)
{
	S(bridle_orig_dst);
	F(bridle_orig_dst, ip4);
	F(bridle_orig_dst, ip6);
	F(bridle_orig_dst, port);
	F(bridle_orig_dst, family);
	F(bridle_orig_dst, proto);
	F(bridle_orig_dst, pid);
	F(bridle_orig_dst, cgroup_id);

	S(bridle_peer_key);
	F(bridle_peer_key, ip6);
	F(bridle_peer_key, port);

	S(bridle_config);
	F(bridle_config, magic);
	F(bridle_config, abi_version);
	F(bridle_config, proxy_ip4);
	F(bridle_config, proxy_ip6);
	F(bridle_config, dns_ip4);
	F(bridle_config, dns_ip6);
	F(bridle_config, proxy_port);
	F(bridle_config, dns_port);
	F(bridle_config, own_ports);
	F(bridle_config, gateway_ports);
	F(bridle_config, exempt_tgid);
	F(bridle_config, exempt_tgid_cgroup);
	F(bridle_config, flags);
	F(bridle_config, exempt_level);
	F(bridle_config, exempt_cgroup);
	F(bridle_config, verdict_generation);

	S(bridle_dest_key);
	F(bridle_dest_key, ip6);
	F(bridle_dest_key, port);
	F(bridle_dest_key, proto);

	S(bridle_verdict);
	F(bridle_verdict, generation);

	printf("BRIDLE_CONFIG_MAGIC %u\n", BRIDLE_CONFIG_MAGIC);
	printf("BRIDLE_ABI_VERSION %u\n", BRIDLE_ABI_VERSION);
	printf("BRIDLE_MAX_OWN_PORTS %u\n", BRIDLE_MAX_OWN_PORTS);
	printf("BRIDLE_MAX_GATEWAY_PORTS %u\n", BRIDLE_MAX_GATEWAY_PORTS);
	printf("BRIDLE_SELECT_NETNS %u\n", BRIDLE_SELECT_NETNS);
	return 0;
}
