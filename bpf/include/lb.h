/* lb.h: frontend lookup and backend choice shared by socket LB and tc LB. A new flow takes
 * the client's affinity backend while it is fresh, else the Maglev bucket of the flow hash;
 * the agent keeps terminating and removed backends out of the Maglev tables and purges
 * their affinity entries, so the datapath never needs the backend list itself. */
#ifndef SKIFF_LB_H
#define SKIFF_LB_H

#include "lb_maps.h"

#define SKIFF_NSEC_PER_SEC 1000000000ULL

/* Bob Jenkins' final mix, as the kernel's jhash_3words: the flow hash feeding Maglev. */
static __always_inline __u32 lb_rol32(__u32 w, int s) { return (w << s) | (w >> (32 - s)); }

static __always_inline __u32 lb_hash3(__u32 a, __u32 b, __u32 c)
{
	a += 0xdeadbeef;
	b += 0xdeadbeef;
	c += 0xdeadbeef;
	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

/* The frontend (slot 0) for a destination, or NULL. */
static __always_inline struct skiff_lb_svc *lb_lookup_service(__be32 vip, __be16 port, __u8 proto)
{
	struct skiff_lb_svc_key key = {};

	key.vip = vip;
	key.dport = port;
	key.proto = proto;
	return bpf_map_lookup_elem(&lb_services, &key);
}

/* Counters of a frontend, or NULL for an id beyond the array. */
static __always_inline struct skiff_lb_stats *lb_stats_of(__u32 rev_nat_id)
{
	return bpf_map_lookup_elem(&lb_stats, &rev_nat_id);
}

static __always_inline void lb_count_no_backend(__u32 rev_nat_id)
{
	struct skiff_lb_stats *st = lb_stats_of(rev_nat_id);

	if (st)
		st->no_backend++;
}

/* Backend id of a Maglev bucket, 0 when the table is missing. */
static __always_inline __u32 lb_maglev_pick(__u32 rev_nat_id, __u32 hash)
{
	struct skiff_lb_maglev *table = bpf_map_lookup_elem(&lb_maglev, &rev_nat_id);
	__u32 bucket = hash % SKIFF_MAGLEV_M;

	/* the verifier cannot bound a modulo: hide it from the compiler, then check */
	asm volatile("" : "+r"(bucket));
	if (!table || bucket >= SKIFF_MAGLEV_M)
		return 0;
	return table->backend_id[bucket];
}

/* Chooses the backend of a new flow; returns its id (0 = none) and the backend in *out.
 * `akey` names the client for ClientIP affinity (ignored without SKIFF_SVC_AFFINITY). */
static __always_inline __u32 lb_select_backend(const struct skiff_lb_svc *svc, __u32 hash,
					       const struct skiff_lb_affinity_key *akey,
					       struct skiff_lb_backend **out)
{
	struct skiff_lb_backend *be;
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 id;

	if (svc->flags & SKIFF_SVC_AFFINITY) {
		struct skiff_lb_affinity *aff = bpf_map_lookup_elem(&lb_affinity, akey);

		if (aff && now - aff->last_used <= (__u64)svc->affinity_timeout * SKIFF_NSEC_PER_SEC) {
			id = aff->backend_id;
			be = bpf_map_lookup_elem(&lb_backends, &id);
			if (be) {
				aff->last_used = now;
				*out = be;
				return id;
			}
		}
	}
	id = lb_maglev_pick(svc->rev_nat_id, hash);
	if (!id)
		return 0;
	be = bpf_map_lookup_elem(&lb_backends, &id);
	if (!be)
		return 0;
	if (svc->flags & SKIFF_SVC_AFFINITY) {
		struct skiff_lb_affinity aff = {};

		aff.last_used = now;
		aff.backend_id = id;
		bpf_map_update_elem(&lb_affinity, akey, &aff, BPF_ANY);
	}
	*out = be;
	return id;
}

#endif /* SKIFF_LB_H */
