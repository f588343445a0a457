/* counter_maps.h: the traffic counter's maps, defined once in counter_maps.c and declared
 * `extern` everywhere else, so the static link (bpftool gen object) resolves them to one map. */
#ifndef SKIFF_COUNTER_MAPS_H
#define SKIFF_COUNTER_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "skiff_abi.h"

/* Sizes a build may override with -D (Katran's habit). */
#ifndef SKIFF_COUNTER_MAX_SOURCES
#define SKIFF_COUNTER_MAX_SOURCES 4096
#endif

/* Only counter_maps.c defines SKIFF_COUNTER_DEFINE_MAPS; it must be the first object in the
 * link (see agent/bpf/build.ts). */
#ifdef SKIFF_COUNTER_DEFINE_MAPS
#define SKIFF_COUNTER_MAP
#else
#define SKIFF_COUNTER_MAP extern
#endif

/* Packets and bytes per tc direction (enum skiff_counter_dir), one slot per CPU: no atomics. */
SKIFF_COUNTER_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SKIFF_COUNTER_DIRS);
	__type(key, __u32);
	__type(value, struct skiff_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counter_totals SEC(".maps");

/* Packets and bytes per IPv4 source address and protocol, shared by all CPUs (atomic adds). */
SKIFF_COUNTER_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKIFF_COUNTER_MAX_SOURCES);
	__type(key, struct skiff_counter_key);
	__type(value, struct skiff_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counter_by_source SEC(".maps");

#endif /* SKIFF_COUNTER_MAPS_H */
