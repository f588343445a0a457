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

/* ---- service load balancing (sock_lb.c, tc_lb.c) ----
 * A frontend is one (address, port, protocol) a Service answers on: a ClusterIP, an externalIP,
 * a LoadBalancer IP or a NodePort on one node address. Each frontend has its own rev-NAT id,
 * which is also the id of its Maglev table and the index of its counters. */

/* lb_services key. slot 0 holds the frontend itself; slots 1..count list the backend ids that
 * take new flows (the reconciler reads them back; the datapath picks through Maglev). */
struct skiff_lb_svc_key {
	__be32 vip;      /* frontend address, network order */
	__be16 dport;    /* frontend port, network order */
	__u8 proto;      /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad0;       /* zero */
	__u16 slot;      /* 0 = the frontend, 1..count = backend slots; host order */
	__u16 pad1;      /* zero */
};

/* lb_services value flags (per frontend). */
#define SKIFF_SVC_AFFINITY   0x0001 /* sessionAffinity ClientIP: lb_affinity is consulted */
#define SKIFF_SVC_LOCAL      0x0002 /* traffic policy Local applies: backends are node-local */
#define SKIFF_SVC_CLUSTERIP  0x0004 /* a ClusterIP: socket LB only, tc LB ignores it */
#define SKIFF_SVC_EXTERNAL   0x0008 /* an externalIP or LoadBalancer IP: tc LB serves it */
#define SKIFF_SVC_NODEPORT   0x0010 /* a NodePort on a node address: tc LB serves it */

/* lb_services value. */
struct skiff_lb_svc {
	__u32 backend_id;       /* slot > 0: the backend id in this slot; slot 0: 0 */
	__u32 rev_nat_id;       /* id in lb_rev_nat, lb_maglev and lb_stats (1..); same in every slot */
	__u32 affinity_timeout; /* slot 0: ClientIP affinity timeout in seconds (0 without affinity) */
	__u16 count;            /* slot 0: backends taking new flows (0 = drop/refuse new flows) */
	__u16 flags;            /* slot 0: SKIFF_SVC_* */
};

/* lb_backends value flags. */
#define SKIFF_BE_TERMINATING 0x01 /* terminating: keeps existing flows, takes no new ones */
#define SKIFF_BE_LOCAL       0x02 /* runs on this node: no SNAT needed for tc LB */

/* lb_backends value, keyed by a __u32 backend id (1..). */
struct skiff_lb_backend {
	__be32 addr;  /* backend (Pod) address, network order */
	__be16 port;  /* backend port, network order */
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 flags;   /* SKIFF_BE_* */
};

/* lb_rev_nat value, keyed by a __u32 rev-NAT id: the frontend a reply must appear to come from. */
struct skiff_lb_rev_nat {
	__be32 vip;   /* frontend address, network order */
	__be16 port;  /* frontend port, network order */
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;     /* zero */
};

/* Maglev lookup table size: a prime, well above the largest backend count of one frontend. */
#ifndef SKIFF_MAGLEV_M
#define SKIFF_MAGLEV_M 16381
#endif

/* lb_maglev value, keyed by a __u32 rev-NAT id: backend id per Maglev bucket. */
struct skiff_lb_maglev {
	__u32 backend_id[SKIFF_MAGLEV_M]; /* bucket (hash % M) -> backend id */
};

/* Conntrack direction of an lb_ct entry. */
#define SKIFF_CT_FWD 0 /* client -> frontend, as the packet arrives */
#define SKIFF_CT_REV 1 /* backend -> client (or SNAT address), as the reply arrives */

/* lb_ct key: the packet's own 5-tuple as it is seen before rewriting. */
struct skiff_lb_ct_key {
	__be32 saddr;  /* source address, network order */
	__be32 daddr;  /* destination address, network order */
	__be16 sport;  /* source port, network order */
	__be16 dport;  /* destination port, network order */
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 dir;      /* SKIFF_CT_FWD or SKIFF_CT_REV */
	__u16 pad;     /* zero */
};

/* TCP state of a flow (UDP flows stay SKIFF_CT_OPEN). */
#define SKIFF_CT_SYN_SENT    1 /* SYN seen, no reply yet */
#define SKIFF_CT_OPEN        2 /* reply seen: established (or a live UDP flow) */
#define SKIFF_CT_CLOSING     3 /* FIN seen from one side */
#define SKIFF_CT_CLOSED      4 /* RST, or FIN from both sides */

/* lb_ct value flags. */
#define SKIFF_CT_F_SNAT      0x01 /* the flow is SNATed to the node address */
#define SKIFF_CT_F_FIN_FWD   0x02 /* FIN seen from the client */
#define SKIFF_CT_F_FIN_REV   0x04 /* FIN seen from the backend */

/* lb_ct value: what to write into packets matching the key; a zero address/port keeps the field. */
struct skiff_lb_ct {
	__be32 nat_saddr;  /* new source address (FWD: SNAT address; REV: the frontend VIP) */
	__be32 nat_daddr;  /* new destination address (FWD: backend; REV: the client when SNATed) */
	__be16 nat_sport;  /* new source port (FWD: SNAT port; REV: the frontend port) */
	__be16 nat_dport;  /* new destination port (FWD: backend port; REV: client port if SNATed) */
	__u32 backend_id;  /* backend chosen for the flow (lets the agent purge a removed backend) */
	__u32 rev_nat_id;  /* frontend of the flow (counters) */
	__u8 state;        /* SKIFF_CT_SYN_SENT .. SKIFF_CT_CLOSED */
	__u8 flags;        /* SKIFF_CT_F_* */
	__u16 pad;         /* zero */
	__u64 last_seen;   /* bpf_ktime_get_boot_ns() of the last packet (either direction) */
};

/* Affinity client kinds. */
#define SKIFF_AFF_IP    0 /* client_id is the client IPv4 address (tc LB), network order */
#define SKIFF_AFF_NETNS 1 /* client_id is the client's netns cookie (socket LB) */

/* lb_affinity key: one client of one frontend. */
struct skiff_lb_affinity_key {
	__u64 client_id;   /* SKIFF_AFF_IP: the address in the low 32 bits; SKIFF_AFF_NETNS: cookie */
	__u32 rev_nat_id;  /* the frontend */
	__u8 kind;         /* SKIFF_AFF_IP or SKIFF_AFF_NETNS */
	__u8 pad[3];       /* zero */
};

/* lb_affinity value. */
struct skiff_lb_affinity {
	__u64 last_used;   /* bpf_ktime_get_boot_ns() of the last flow that used it */
	__u32 backend_id;  /* the backend the client sticks to */
	__u32 pad;         /* zero */
};

/* lb_sock_rev key: a socket and the backend it was sent to (socket LB reverse translation). */
struct skiff_lb_sock_rev_key {
	__u64 cookie;      /* bpf_get_socket_cookie() */
	__be32 addr;       /* backend address, network order */
	__be16 port;       /* backend port, network order */
	__u16 pad;         /* zero */
};

/* lb_sock_rev value: what the application must see as the peer. */
struct skiff_lb_sock_rev {
	__be32 vip;        /* frontend address, network order */
	__be16 port;       /* frontend port, network order */
	__u16 pad;         /* zero */
	__u32 rev_nat_id;  /* the frontend */
};

/* lb_stats value (per CPU), indexed by rev-NAT id. */
struct skiff_lb_stats {
	__u64 new_flows;   /* connections / flows given a backend */
	__u64 packets;     /* packets translated by tc LB (socket LB translates no packets) */
	__u64 bytes;       /* bytes of those packets */
	__u64 no_backend;  /* new flows refused because the frontend had no backend */
};

/* lb_config value (a single entry, index 0): node facts the datapath needs. */
struct skiff_lb_config {
	__be32 snat_addr;  /* node address used to SNAT flows to backends on other nodes */
	__u32 flags;       /* reserved, zero */
};

#endif /* SKIFF_ABI_H */
