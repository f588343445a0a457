/* tc_lb.c: tc (tcx or clsact) LB on the node's uplink for NodePort and external IPs arriving
 * from outside; attach tc_lb_ingress on ingress and tc_lb_egress on egress. */
#include "include/nodeport.h"

SEC("tc")
int tc_lb_ingress(struct __sk_buff *skb)
{
	return lb_tc_ingress(skb);
}

SEC("tc")
int tc_lb_egress(struct __sk_buff *skb)
{
	return lb_tc_egress(skb);
}

char LICENSE[] SEC("license") = "GPL";
