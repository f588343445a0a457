/* sock_destroy.c: an "iter/udp" program that destroys UDP sockets connected to a removed
 * backend. connect4 (sock_lb.c) rewrote such a socket's destination once; sendmsg4 never
 * runs again for it, so without this it would keep sending to the removed backend forever.
 * bpf_sock_destroy() (kernel >= 6.5) aborts it with ECONNABORTED and disconnects it, so the
 * application reconnects through the VIP. A separate object from sock_lb.o: it needs CO-RE
 * kernel types and a 6.5 kfunc, and shares no map with sock_lb (a kernel without the kfunc
 * then loses only this, not socket LB). The agent fills lb_sock_purge, reads the iterator
 * once per network namespace, and clears the map. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "include/skiff_abi.h"

/* The kernel types this program reads, with only the fields it uses: preserve_access_index
 * makes every access a CO-RE relocation, resolved against the running kernel's BTF at load,
 * so no vmlinux.h (a 3 MB header tied to the build host) is needed. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct udp_sock;
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

/* The iterator's context (stable layout: pointers widened to 64 bits, as __bpf_md_ptr). */
struct bpf_iter__udp {
	union {
		struct bpf_iter_meta *meta;
		__u64 :64;
	} __attribute__((aligned(8)));
	union {
		struct udp_sock *udp_sk;
		__u64 :64;
	} __attribute__((aligned(8)));
	__u32 uid __attribute__((aligned(8)));
	int bucket __attribute__((aligned(8)));
};

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

#ifndef SKIFF_SOCK_PURGE_SIZE
#define SKIFF_SOCK_PURGE_SIZE 4096
#endif

#ifndef AF_INET
#define AF_INET 2
#endif

/* Backends whose connected UDP sockets must go: the key is a struct skiff_lb_backend with
 * flags 0 (addr and port in network order, proto IPPROTO_UDP), the value is unused (1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKIFF_SOCK_PURGE_SIZE);
	__type(key, struct skiff_lb_backend);
	__type(value, __u8);
#ifndef SKIFF_NO_PIN
	__uint(pinning, LIBBPF_PIN_BY_NAME);
#endif
} lb_sock_purge SEC(".maps");

SEC("iter/udp")
int sock_destroy_udp(struct bpf_iter__udp *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock *sk = (struct sock *)ctx->udp_sk;
	struct skiff_lb_backend key = {};
	__be32 saddr;
	__u16 sport;

	if (!sk)
		return 0;
	if (sk->__sk_common.skc_family != AF_INET)
		return 0;
	key.addr = sk->__sk_common.skc_daddr;
	key.port = sk->__sk_common.skc_dport;
	key.proto = IPPROTO_UDP;
	/* an unconnected socket has daddr 0: sendmsg4 re-selects its backend per datagram */
	if (!key.addr || !bpf_map_lookup_elem(&lb_sock_purge, &key))
		return 0;
	saddr = sk->__sk_common.skc_rcv_saddr;
	sport = sk->__sk_common.skc_num;
	if (bpf_sock_destroy(&sk->__sk_common) == 0)
		/* one line per destroyed socket: the agent counts them */
		BPF_SEQ_PRINTF(seq, "%pI4:%u %pI4:%u\n", &saddr, sport, &key.addr,
			       bpf_ntohs(key.port));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
