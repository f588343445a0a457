/* nat.h: rewriting IPv4 addresses and TCP/UDP ports in a packet with incremental checksum
 * updates (bpf_l3/l4_csum_replace). Offsets are packet offsets; no packet pointer is held
 * across a write, since every helper call below invalidates them. */
#ifndef SKIFF_NAT_H
#define SKIFF_NAT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>

#define NAT_IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define NAT_IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define NAT_IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

/* Offset of the L4 checksum field, relative to the L4 header. */
static __always_inline __u32 nat_l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) : offsetof(struct udphdr, check);
}

/* UDP checksum 0 means "none": BPF_F_MARK_MANGLED_0 leaves it so and never writes a 0. */
static __always_inline __u64 nat_l4_flags(__u8 proto)
{
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Replaces the source (is_src) or destination address and port; 0 on success. */
static __always_inline int nat_rewrite(struct __sk_buff *skb, __u32 l4off, __u8 proto, int is_src,
				       __be32 old_addr, __be32 new_addr, __be16 old_port,
				       __be16 new_port)
{
	__u32 csum_off = l4off + nat_l4_csum_off(proto);
	__u32 port_off = l4off + (is_src ? 0 : 2); /* source then dest port in TCP and UDP */
	__u64 l4flags = nat_l4_flags(proto);

	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr,
					l4flags | BPF_F_PSEUDO_HDR | sizeof(new_addr)))
			return -1;
		if (bpf_l3_csum_replace(skb, NAT_IP_CSUM_OFF, old_addr, new_addr, sizeof(new_addr)))
			return -1;
		if (bpf_skb_store_bytes(skb, is_src ? NAT_IP_SRC_OFF : NAT_IP_DST_OFF, &new_addr,
					sizeof(new_addr), 0))
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, l4flags | sizeof(new_port)))
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0))
			return -1;
	}
	return 0;
}

#endif /* SKIFF_NAT_H */
