/* tc_lb.c: tc (tcx or clsact) LB. On the node's uplink, for NodePort and external IPs arriving
 * from outside: tc_lb_ingress on ingress, tc_lb_egress on egress. On the host side of a Pod
 * whose cgroup is not hooked: tc_lb_pod_ingress on ingress, tc_lb_egress on egress. */
#include "include/nodeport.h"

SEC("tc")
int tc_lb_ingress(struct __sk_buff *skb)
{
	return lb_tc_ingress(skb, LB_AT_UPLINK);
}

SEC("tc")
int tc_lb_pod_ingress(struct __sk_buff *skb)
{
	return lb_tc_ingress(skb, LB_AT_POD);
}

SEC("tc")
int tc_lb_egress(struct __sk_buff *skb)
{
	return lb_tc_egress(skb);
}

char LICENSE[] SEC("license") = "GPL";
