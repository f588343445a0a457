/* sock.h: socket LB for the cgroup sock_addr hooks. connect/sendmsg swap a frontend for a
 * backend before any packet exists (so no per-packet NAT), remembering the frontend per socket
 * cookie; recvmsg/getpeername swap it back so the application sees the VIP as its peer. */
#ifndef SKIFF_SOCK_H
#define SKIFF_SOCK_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "lb.h"

/* cgroup sock_addr verdicts */
#define SOCK_ALLOW 1
#define SOCK_REFUSE 0

/* Translates the destination of a connect/sendmsg to a frontend into a backend. */
static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx)
{
	struct skiff_lb_affinity_key akey = {};
	struct skiff_lb_sock_rev_key rkey = {};
	struct skiff_lb_sock_rev rval = {};
	struct skiff_lb_backend *be = NULL;
	struct skiff_lb_svc *svc;
	struct skiff_lb_stats *st;
	__u8 proto = ctx->protocol;
	__be32 vip = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u64 cookie;
	__u32 id;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return SOCK_ALLOW;
	svc = lb_lookup_service(vip, port, proto);
	if (!svc)
		return SOCK_ALLOW;
	if (!svc->count) {
		lb_count_no_backend(svc->rev_nat_id);
		return SOCK_REFUSE;
	}
	cookie = bpf_get_socket_cookie(ctx);
	akey.client_id = bpf_get_netns_cookie(ctx);
	akey.rev_nat_id = svc->rev_nat_id;
	akey.kind = SKIFF_AFF_NETNS;
	/* per-socket hash: a socket keeps its backend while the Maglev table keeps the bucket */
	id = lb_select_backend(svc, lb_hash3((__u32)cookie, (__u32)(cookie >> 32), port), &akey, &be);
	if (!id || !be) {
		lb_count_no_backend(svc->rev_nat_id);
		return SOCK_REFUSE;
	}
	rkey.cookie = cookie;
	rkey.addr = be->addr;
	rkey.port = be->port;
	/* unconnected UDP comes through here per datagram: write only what is new */
	struct skiff_lb_sock_rev *have = bpf_map_lookup_elem(&lb_sock_rev, &rkey);

	if (!have || have->vip != vip || have->port != port) {
		rval.vip = vip;
		rval.port = port;
		rval.rev_nat_id = svc->rev_nat_id;
		bpf_map_update_elem(&lb_sock_rev, &rkey, &rval, BPF_ANY);
	}
	st = lb_stats_of(svc->rev_nat_id);
	if (st)
		st->new_flows++;
	ctx->user_ip4 = be->addr;
	ctx->user_port = be->port;
	return SOCK_ALLOW;
}

/* Shows the frontend instead of the backend as the peer of a translated socket. */
static __always_inline int sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	struct skiff_lb_sock_rev_key rkey = {};
	struct skiff_lb_sock_rev *rval;

	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.addr = ctx->user_ip4;
	rkey.port = (__be16)ctx->user_port;
	rval = bpf_map_lookup_elem(&lb_sock_rev, &rkey);
	if (rval) {
		ctx->user_ip4 = rval->vip;
		ctx->user_port = rval->port;
	}
	return SOCK_ALLOW;
}

#endif /* SKIFF_SOCK_H */
