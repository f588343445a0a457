/* skiff_abi.h: every struct that crosses the kernel/user boundary, and nothing else.
 * The TypeScript codecs in agent/bpf/abi.ts mirror this file field by field; a test compiles
 * it, reads the BTF and fails on any offset or size difference. Padding is explicit and the
 * byte order of every address and port field is stated (network order = __be). */
#ifndef SKIFF_ABI_H
#define SKIFF_ABI_H

#include <linux/types.h>

/* ---- traffic counter (counter.c) ---- */

/* Index into counter_totals: which tc hook counted the packet. */
enum skiff_counter_dir {
	SKIFF_COUNTER_INGRESS = 0, /* tc ingress of the interface */
	SKIFF_COUNTER_EGRESS = 1,  /* tc egress of the interface */
	SKIFF_COUNTER_DIRS = 2,    /* number of slots in counter_totals */
};

/* Value of counter_totals (per CPU: userspace sums the CPUs) and of counter_by_source. */
struct skiff_counter_value {
	__u64 packets; /* packets seen, host order */
	__u64 bytes;   /* bytes seen (skb->len: L2 header included), host order */
};

/* Key of counter_by_source: one IPv4 source address and L4 protocol. */
struct skiff_counter_key {
	__be32 saddr; /* IPv4 source address, network order */
	__u8 proto;   /* IPPROTO_* from the IPv4 header (6 TCP, 17 UDP, 1 ICMP) */
	__u8 _pad[3]; /* explicit padding, always zero (part of the hash key) */
};

/* ---- service load balancing (sock_lb.c, tc_lb.c) ---- */

#endif /* SKIFF_ABI_H */
