/* nodeport.h: the tc LB for traffic socket LB cannot see (NodePort and external IPs arriving
 * from outside the node). Ingress: a known flow is rewritten from its conntrack entry; a new
 * flow to a frontend gets a backend, DNAT, and SNAT to the node address when the backend is
 * remote and the policy is Cluster; replies to SNATed flows are reverse-translated. Egress:
 * replies from local backends get the frontend address back. On a Pod's host-side device
 * (Pods whose cgroup has no socket LB) ingress serves every frontend, ClusterIPs included,
 * without SNAT: the reply is routed back to the Pod through this node, where egress (on the
 * Pod's device) or ingress (on the backend Pod's device) turns it back. */
#ifndef SKIFF_NODEPORT_H
#define SKIFF_NODEPORT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "conntrack.h"
#include "lb.h"
#include "nat.h"

/* Where an ingress program sits. */
#define LB_AT_UPLINK 0 /* the node's uplink: NodePort / external frontends, SNAT to remote backends */
#define LB_AT_POD    1 /* a Pod's host-side device: every frontend, no SNAT (replies come back here) */

/* How many SNAT ports are tried before a colliding flow is dropped. */
#define SKIFF_SNAT_TRIES 8
#define SKIFF_SNAT_PORT_MIN 32768
#define SKIFF_SNAT_PORT_SPAN 28232 /* up to 60999, Linux's default ephemeral range */

/* The parts of a TCP/UDP over IPv4 packet the LB needs. */
struct lb_pkt {
	struct skiff_lb_ct_key key; /* the packet's tuple (dir left for the caller) */
	__u32 l4off;                /* offset of the TCP/UDP header */
	__u8 tcp_flags;             /* TCP flag byte, 0 for UDP */
};

/* Fills `pkt`; returns 0 for a TCP/UDP packet the LB may translate, -1 to leave it alone. */
static __always_inline int lb_parse(struct __sk_buff *skb, struct lb_pkt *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 ihl;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -1;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return -1;
	/* non-first fragments carry no ports */
	if (ip->frag_off & bpf_htons(0x1fff))
		return -1;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return -1;
	__builtin_memset(pkt, 0, sizeof(*pkt));
	pkt->l4off = ETH_HLEN + ihl;
	pkt->key.saddr = ip->saddr;
	pkt->key.daddr = ip->daddr;
	pkt->key.proto = ip->protocol;

	__u8 *l4 = data + pkt->l4off;

	if (ip->protocol == IPPROTO_TCP) {
		if ((void *)(l4 + 14) > data_end) /* ports and the flag byte at 13 */
			return -1;
		pkt->tcp_flags = l4[13];
	} else if ((void *)(l4 + 8) > data_end) {
		return -1;
	}
	pkt->key.sport = *(__be16 *)l4;
	pkt->key.dport = *(__be16 *)(l4 + 2);
	return 0;
}

static __always_inline void lb_count_packet(__u32 rev_nat_id, struct __sk_buff *skb)
{
	struct skiff_lb_stats *st = lb_stats_of(rev_nat_id);

	if (st) {
		st->packets++;
		st->bytes += skb->len;
	}
}

/* Sends a packet whose source is now a node address out where the FIB says: through the
 * stack it would be dropped as a martian (a local source arriving from outside). */
static __always_inline int lb_redirect(struct __sk_buff *skb, __be32 saddr, __be32 daddr)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	fib.family = 2; /* AF_INET */
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	fib.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_SHOT;
	return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
}

/* Rewrites a packet as its conntrack entry says (zero fields are kept). At ingress, SNATed
 * packets (either direction) leave through lb_redirect. */
static __always_inline int lb_apply_ct(struct __sk_buff *skb, const struct lb_pkt *pkt,
				       const struct skiff_lb_ct *ct, int ingress)
{
	const struct skiff_lb_ct_key *k = &pkt->key;

	if (ct->nat_daddr &&
	    nat_rewrite(skb, pkt->l4off, k->proto, 0, k->daddr, ct->nat_daddr, k->dport, ct->nat_dport))
		return TC_ACT_SHOT;
	if (ct->nat_saddr &&
	    nat_rewrite(skb, pkt->l4off, k->proto, 1, k->saddr, ct->nat_saddr, k->sport, ct->nat_sport))
		return TC_ACT_SHOT;
	lb_count_packet(ct->rev_nat_id, skb);
	if (ingress && (ct->flags & SKIFF_CT_F_SNAT))
		return lb_redirect(skb, ct->nat_saddr ? ct->nat_saddr : k->saddr,
				   ct->nat_daddr ? ct->nat_daddr : k->daddr);
	return TC_ACT_OK;
}

/* A translated packet of a known flow (either direction); -1 when the flow is unknown. */
static __always_inline int lb_known_flow(struct __sk_buff *skb, struct lb_pkt *pkt, __u8 dir,
					 __u64 now, int ingress)
{
	struct skiff_lb_ct *ct;
	struct skiff_lb_ct copy;

	pkt->key.dir = dir;
	ct = ct_lookup(&pkt->key, now);
	if (!ct)
		return -1;
	/* A fresh SYN on a flow that got past SYN is a new connection reusing the ports:
	 * it chooses again instead of inheriting the old flow's backend and state. */
	if (dir == SKIFF_CT_FWD && (pkt->tcp_flags & (CT_TCP_SYN | CT_TCP_ACK)) == CT_TCP_SYN &&
	    pkt->key.proto == IPPROTO_TCP && ct->state != SKIFF_CT_SYN_SENT) {
		ct_delete_flow(&pkt->key, ct);
		return -1;
	}
	ct_touch(&pkt->key, ct, pkt->tcp_flags, now);
	copy = *ct;
	return lb_apply_ct(skb, pkt, &copy, ingress);
}

/* An SNAT port for a flow to `be` that no live flow uses; 0 when all tries collide. */
static __always_inline __be16 lb_snat_port(const struct lb_pkt *pkt, const struct skiff_lb_backend *be,
					   __be32 snat_addr, __u32 hash, __u64 now)
{
	struct skiff_lb_ct_key rev = {};
	__be16 port = pkt->key.sport;

	rev.saddr = be->addr;
	rev.sport = be->port;
	rev.daddr = snat_addr;
	rev.proto = pkt->key.proto;
	rev.dir = SKIFF_CT_REV;
	for (int i = 0; i < SKIFF_SNAT_TRIES; i++) {
		rev.dport = port;
		if (!ct_lookup(&rev, now))
			return port;
		port = bpf_htons(SKIFF_SNAT_PORT_MIN + (hash + i * 7919) % SKIFF_SNAT_PORT_SPAN);
	}
	return 0;
}

/* A new flow to a frontend served by tc LB: choose, record both directions, translate. */
static __always_inline int lb_new_flow(struct __sk_buff *skb, struct lb_pkt *pkt,
				       const struct skiff_lb_svc *svc, __u64 now, int at)
{
	struct skiff_lb_affinity_key akey = {};
	struct skiff_lb_backend *be = NULL;
	struct skiff_lb_ct fwd = {}, rev = {};
	struct skiff_lb_ct_key rev_key = {};
	const struct skiff_lb_ct_key *k = &pkt->key;
	__be32 snat_addr = 0;
	__be16 snat_port = 0;
	__u32 hash, id;

	if (!svc->count) {
		lb_count_no_backend(svc->rev_nat_id);
		return TC_ACT_SHOT;
	}
	hash = lb_hash3(k->saddr, k->daddr, ((__u32)k->sport << 16 | k->dport) ^ k->proto);
	akey.client_id = k->saddr;
	akey.rev_nat_id = svc->rev_nat_id;
	akey.kind = SKIFF_AFF_IP;
	id = lb_select_backend(svc, hash, &akey, &be);
	if (!id || !be) {
		lb_count_no_backend(svc->rev_nat_id);
		return TC_ACT_SHOT;
	}
	if (at == LB_AT_UPLINK && !(be->flags & SKIFF_BE_LOCAL) && !(svc->flags & SKIFF_SVC_LOCAL)) {
		__u32 zero = 0;
		struct skiff_lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);

		if (!cfg || !cfg->snat_addr)
			return TC_ACT_SHOT;
		snat_addr = cfg->snat_addr;
		snat_port = lb_snat_port(pkt, be, snat_addr, hash, now);
		if (!snat_port)
			return TC_ACT_SHOT;
	}

	fwd.nat_daddr = be->addr;
	fwd.nat_dport = be->port;
	fwd.nat_saddr = snat_addr;
	fwd.nat_sport = snat_port;
	fwd.backend_id = id;
	fwd.rev_nat_id = svc->rev_nat_id;
	fwd.state = k->proto == IPPROTO_TCP && (pkt->tcp_flags & CT_TCP_SYN) ? SKIFF_CT_SYN_SENT
									      : SKIFF_CT_OPEN;
	fwd.flags = snat_addr ? SKIFF_CT_F_SNAT : 0;
	fwd.last_seen = now;

	rev.nat_saddr = k->daddr;
	rev.nat_sport = k->dport;
	rev.nat_daddr = snat_addr ? k->saddr : 0;
	rev.nat_dport = snat_addr ? k->sport : 0;
	rev.backend_id = id;
	rev.rev_nat_id = svc->rev_nat_id;
	rev.state = fwd.state;
	rev.flags = fwd.flags;
	rev.last_seen = now;

	rev_key.saddr = be->addr;
	rev_key.sport = be->port;
	rev_key.daddr = snat_addr ? snat_addr : k->saddr;
	rev_key.dport = snat_addr ? snat_port : k->sport;
	rev_key.proto = k->proto;
	rev_key.dir = SKIFF_CT_REV;

	/* reverse first: a reply must never find a forward entry without its way back */
	if (bpf_map_update_elem(&lb_ct, &rev_key, &rev, BPF_ANY) ||
	    bpf_map_update_elem(&lb_ct, k, &fwd, BPF_ANY))
		return TC_ACT_SHOT;

	struct skiff_lb_stats *st = lb_stats_of(svc->rev_nat_id);

	if (st)
		st->new_flows++;
	return lb_apply_ct(skb, pkt, &fwd, 1);
}

static __always_inline int lb_tc_ingress(struct __sk_buff *skb, int at)
{
	struct lb_pkt pkt;
	struct skiff_lb_svc *svc;
	__u64 now = bpf_ktime_get_boot_ns();
	int ret;

	if (lb_parse(skb, &pkt))
		return TC_ACT_OK;
	ret = lb_known_flow(skb, &pkt, SKIFF_CT_FWD, now, 1);
	if (ret >= 0)
		return ret;
	/* replies of SNATed flows come back to the node address */
	ret = lb_known_flow(skb, &pkt, SKIFF_CT_REV, now, 1);
	if (ret >= 0)
		return ret;
	pkt.key.dir = SKIFF_CT_FWD;
	svc = lb_lookup_service(pkt.key.daddr, pkt.key.dport, pkt.key.proto);
	if (svc && (at == LB_AT_POD || (svc->flags & (SKIFF_SVC_EXTERNAL | SKIFF_SVC_NODEPORT))))
		return lb_new_flow(skb, &pkt, svc, now, at);
	/* A direct connection reusing the ports of an old translated flow: drop the old flow's
	 * reverse entry, or this connection's replies would be rewritten to the frontend. */
	if (pkt.key.proto == IPPROTO_TCP && (pkt.tcp_flags & (CT_TCP_SYN | CT_TCP_ACK)) == CT_TCP_SYN) {
		struct skiff_lb_ct_key stale = {};
		struct skiff_lb_ct *ct;

		stale.saddr = pkt.key.daddr;
		stale.daddr = pkt.key.saddr;
		stale.sport = pkt.key.dport;
		stale.dport = pkt.key.sport;
		stale.proto = IPPROTO_TCP;
		stale.dir = SKIFF_CT_REV;
		ct = bpf_map_lookup_elem(&lb_ct, &stale);
		if (ct) {
			struct skiff_lb_ct copy = *ct;

			ct_delete_flow(&stale, &copy);
		}
	}
	return TC_ACT_OK;
}

static __always_inline int lb_tc_egress(struct __sk_buff *skb)
{
	struct lb_pkt pkt;
	int ret;

	if (lb_parse(skb, &pkt))
		return TC_ACT_OK;
	ret = lb_known_flow(skb, &pkt, SKIFF_CT_REV, bpf_ktime_get_boot_ns(), 0);
	return ret >= 0 ? ret : TC_ACT_OK;
}

#endif /* SKIFF_NODEPORT_H */
