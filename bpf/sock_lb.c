/* sock_lb.c: socket LB, attached to the node's cgroup (connect4, sendmsg4, recvmsg4,
 * getpeername4). TCP and UDP to a frontend reach a backend with no per-packet NAT. */
#include "include/sock.h"

SEC("cgroup/connect4")
int sock_lb_connect4(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

SEC("cgroup/sendmsg4")
int sock_lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

SEC("cgroup/recvmsg4")
int sock_lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}

SEC("cgroup/getpeername4")
int sock_lb_getpeername4(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}

char LICENSE[] SEC("license") = "GPL";
