/* lb_maps.h: the service load-balancing maps shared by sock_lb.c and tc_lb.c, pinned by name
 * in the node's pin dir so the agent (and a restarted agent) finds them. Sizes are build-time
 * tunables. Maglev tables: one hash entry per frontend whose value is the whole table (as
 * Cilium's inner maps hold it), with BPF_F_NO_PREALLOC so memory follows the frontends that
 * exist (64 KiB each) instead of reserving SKIFF_MAX_SERVICES tables up front (4 GiB); one
 * update writes a table atomically, which a map-of-maps would need an inner map per table for. */
#ifndef SKIFF_LB_MAPS_H
#define SKIFF_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "skiff_abi.h"

#ifndef SKIFF_MAX_SERVICES
#define SKIFF_MAX_SERVICES 65536 /* frontends (rev-NAT ids) */
#endif
#ifndef SKIFF_MAX_SERVICE_SLOTS
#define SKIFF_MAX_SERVICE_SLOTS 1048576 /* frontends + backend slots in lb_services */
#endif
#ifndef SKIFF_MAX_BACKENDS
#define SKIFF_MAX_BACKENDS 262144
#endif
#ifndef SKIFF_CT_SIZE
#define SKIFF_CT_SIZE 262144 /* flows x 2 directions */
#endif
#ifndef SKIFF_AFFINITY_SIZE
#define SKIFF_AFFINITY_SIZE 65536
#endif
#ifndef SKIFF_SOCK_REV_SIZE
#define SKIFF_SOCK_REV_SIZE 262144
#endif

/* Tests load the objects with bpftool, which pins maps itself (pinmaps DIR). */
#ifdef SKIFF_NO_PIN
#define SKIFF_PINNING
#else
#define SKIFF_PINNING __uint(pinning, LIBBPF_PIN_BY_NAME);
#endif

/* Frontends (slot 0) and their backend slots. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKIFF_MAX_SERVICE_SLOTS);
	__type(key, struct skiff_lb_svc_key);
	__type(value, struct skiff_lb_svc);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	SKIFF_PINNING
} lb_services SEC(".maps");

/* Backend id -> address, port, flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKIFF_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct skiff_lb_backend);
	SKIFF_PINNING
} lb_backends SEC(".maps");

/* Rev-NAT id -> the frontend replies must come from. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKIFF_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct skiff_lb_rev_nat);
	SKIFF_PINNING
} lb_rev_nat SEC(".maps");

/* Rev-NAT id -> Maglev table of backend ids. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKIFF_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct skiff_lb_maglev);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	SKIFF_PINNING
} lb_maglev SEC(".maps");

/* tc LB flows, both directions (LRU: the oldest idle flows go first when full). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SKIFF_CT_SIZE);
	__type(key, struct skiff_lb_ct_key);
	__type(value, struct skiff_lb_ct);
	SKIFF_PINNING
} lb_ct SEC(".maps");

/* ClientIP affinity: client x frontend -> backend (LRU; expiry checked on use). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SKIFF_AFFINITY_SIZE);
	__type(key, struct skiff_lb_affinity_key);
	__type(value, struct skiff_lb_affinity);
	SKIFF_PINNING
} lb_affinity SEC(".maps");

/* Socket LB reverse translation: socket cookie x backend -> frontend (UDP recvmsg, getpeername). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SKIFF_SOCK_REV_SIZE);
	__type(key, struct skiff_lb_sock_rev_key);
	__type(value, struct skiff_lb_sock_rev);
	SKIFF_PINNING
} lb_sock_rev SEC(".maps");

/* Per-frontend counters, indexed by rev-NAT id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SKIFF_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct skiff_lb_stats);
	SKIFF_PINNING
} lb_stats SEC(".maps");

/* Node facts (SNAT address), one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct skiff_lb_config);
	SKIFF_PINNING
} lb_config SEC(".maps");

#endif /* SKIFF_LB_MAPS_H */
