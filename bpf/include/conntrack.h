/* conntrack.h: the tc LB's flow table. Each flow has a forward entry (client -> frontend, as
 * it arrives) and a reverse entry (the reply, as it arrives), each saying how to rewrite the
 * packet. TCP state follows SYN / reply / FIN / RST and picks the idle timeout; expired
 * entries are treated as absent (the LRU map reclaims them). */
#ifndef SKIFF_CONNTRACK_H
#define SKIFF_CONNTRACK_H

#include <linux/in.h>
#include "lb_maps.h"

#ifndef SKIFF_CT_SYN_TIMEOUT
#define SKIFF_CT_SYN_TIMEOUT 60 /* seconds: SYN seen, no reply */
#endif
#ifndef SKIFF_CT_TCP_TIMEOUT
#define SKIFF_CT_TCP_TIMEOUT 21600 /* seconds: established TCP */
#endif
#ifndef SKIFF_CT_CLOSE_TIMEOUT
#define SKIFF_CT_CLOSE_TIMEOUT 10 /* seconds: after FIN or RST */
#endif
#ifndef SKIFF_CT_UDP_TIMEOUT
#define SKIFF_CT_UDP_TIMEOUT 60 /* seconds: UDP flows */
#endif
/* The other direction's entry is refreshed at most this often, so a one-way stream keeps it. */
#define SKIFF_CT_PEER_REFRESH_NS 1000000000ULL

#define CT_TCP_FIN 0x01
#define CT_TCP_SYN 0x02
#define CT_TCP_RST 0x04
#define CT_TCP_ACK 0x10

static __always_inline __u64 ct_timeout_ns(const struct skiff_lb_ct_key *key, __u8 state)
{
	__u64 s;

	if (key->proto != IPPROTO_TCP)
		s = SKIFF_CT_UDP_TIMEOUT;
	else if (state == SKIFF_CT_SYN_SENT)
		s = SKIFF_CT_SYN_TIMEOUT;
	else if (state == SKIFF_CT_OPEN)
		s = SKIFF_CT_TCP_TIMEOUT;
	else
		s = SKIFF_CT_CLOSE_TIMEOUT;
	return s * 1000000000ULL;
}

/* The live entry for a key, or NULL when missing or expired. */
static __always_inline struct skiff_lb_ct *ct_lookup(const struct skiff_lb_ct_key *key, __u64 now)
{
	struct skiff_lb_ct *ct = bpf_map_lookup_elem(&lb_ct, key);

	if (!ct || now - ct->last_seen > ct_timeout_ns(key, ct->state))
		return NULL;
	return ct;
}

/* The key of the other direction of the flow `ct` (found under `key`) belongs to. */
static __always_inline void ct_peer_key(const struct skiff_lb_ct_key *key,
					const struct skiff_lb_ct *ct, struct skiff_lb_ct_key *peer)
{
	__builtin_memset(peer, 0, sizeof(*peer));
	peer->proto = key->proto;
	if (key->dir == SKIFF_CT_FWD) {
		/* reply: from the backend to the client, or to the SNAT address */
		peer->dir = SKIFF_CT_REV;
		peer->saddr = ct->nat_daddr;
		peer->sport = ct->nat_dport;
		peer->daddr = ct->nat_saddr ? ct->nat_saddr : key->saddr;
		peer->dport = ct->nat_sport ? ct->nat_sport : key->sport;
	} else {
		/* request: from the client to the frontend */
		peer->dir = SKIFF_CT_FWD;
		peer->saddr = ct->nat_daddr ? ct->nat_daddr : key->daddr;
		peer->sport = ct->nat_dport ? ct->nat_dport : key->dport;
		peer->daddr = ct->nat_saddr;
		peer->dport = ct->nat_sport;
	}
}

/* The TCP state after a packet with `tcp_flags` in direction `dir`; `flags` gains FIN bits. */
static __always_inline __u8 ct_next_state(__u8 state, __u8 *flags, __u8 tcp_flags, __u8 dir)
{
	if (tcp_flags & CT_TCP_RST)
		return SKIFF_CT_CLOSED;
	if (tcp_flags & CT_TCP_FIN) {
		*flags |= dir == SKIFF_CT_FWD ? SKIFF_CT_F_FIN_FWD : SKIFF_CT_F_FIN_REV;
		if ((*flags & (SKIFF_CT_F_FIN_FWD | SKIFF_CT_F_FIN_REV)) ==
		    (SKIFF_CT_F_FIN_FWD | SKIFF_CT_F_FIN_REV))
			return SKIFF_CT_CLOSED;
		return SKIFF_CT_CLOSING;
	}
	if (state == SKIFF_CT_SYN_SENT && dir == SKIFF_CT_REV)
		return SKIFF_CT_OPEN;
	return state;
}

/* Records a packet of an existing flow: timestamps, and TCP state on both entries when it
 * changes (control packets are rare, so the peer lookup is too). */
static __always_inline void ct_touch(const struct skiff_lb_ct_key *key, struct skiff_lb_ct *ct,
				     __u8 tcp_flags, __u64 now)
{
	__u8 flags = ct->flags;
	__u8 state = ct->state;
	int refresh_peer = now - ct->last_seen > SKIFF_CT_PEER_REFRESH_NS;

	if (key->proto == IPPROTO_TCP)
		state = ct_next_state(state, &flags, tcp_flags, key->dir);
	ct->last_seen = now;
	if (state == ct->state && flags == ct->flags && !refresh_peer)
		return;
	ct->state = state;
	ct->flags = flags;

	struct skiff_lb_ct_key peer_key;
	struct skiff_lb_ct *peer;

	ct_peer_key(key, ct, &peer_key);
	peer = bpf_map_lookup_elem(&lb_ct, &peer_key);
	if (peer) {
		peer->state = state;
		peer->flags = flags;
		peer->last_seen = now;
	}
}

/* Removes a flow: the entry under `key` and its other direction. */
static __always_inline void ct_delete_flow(const struct skiff_lb_ct_key *key,
					   const struct skiff_lb_ct *ct)
{
	struct skiff_lb_ct_key peer_key;

	ct_peer_key(key, ct, &peer_key);
	bpf_map_delete_elem(&lb_ct, &peer_key);
	bpf_map_delete_elem(&lb_ct, key);
}

#endif /* SKIFF_CONNTRACK_H */
