/* counter.c: a traffic counter for tc (tcx) hooks: packets and bytes per direction (per CPU)
 * and per IPv4 source + protocol. It only observes: it returns TC_ACT_UNSPEC, which tcx reads
 * as "next", so programs attached after it (tc_lb) still run. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "counter_maps.h"

static __always_inline void add(struct skiff_counter_value *value, __u64 bytes, int atomic)
{
	if (atomic) {
		__sync_fetch_and_add(&value->packets, 1);
		__sync_fetch_and_add(&value->bytes, bytes);
	} else {
		value->packets += 1;
		value->bytes += bytes;
	}
}

/* Counts one IPv4 packet under its source; anything else only counts in the totals. */
static __always_inline void count_source(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return;

	struct skiff_counter_key key = { .saddr = ip->saddr, .proto = ip->protocol };
	struct skiff_counter_value *value = bpf_map_lookup_elem(&counter_by_source, &key);
	if (value) {
		add(value, skb->len, 1);
		return;
	}
	struct skiff_counter_value first = { .packets = 1, .bytes = skb->len };
	/* BPF_NOEXIST: another CPU may have inserted the key meanwhile; then add to its entry. */
	if (bpf_map_update_elem(&counter_by_source, &key, &first, BPF_NOEXIST) != 0) {
		value = bpf_map_lookup_elem(&counter_by_source, &key);
		if (value)
			add(value, skb->len, 1);
	}
}

static __always_inline int count_packet(struct __sk_buff *skb, __u32 dir)
{
	struct skiff_counter_value *total = bpf_map_lookup_elem(&counter_totals, &dir);
	if (total)
		add(total, skb->len, 0);
	count_source(skb);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int count_ingress(struct __sk_buff *skb)
{
	return count_packet(skb, SKIFF_COUNTER_INGRESS);
}

SEC("tc")
int count_egress(struct __sk_buff *skb)
{
	return count_packet(skb, SKIFF_COUNTER_EGRESS);
}

char LICENSE[] SEC("license") = "GPL";
