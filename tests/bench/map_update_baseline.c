/* The same map updates as tests/bench/ffi_bench.ts, from C through libbpf: the floor the FFI
 * bridge is compared with. Usage: map_update_baseline PIN ENTRIES ROUNDS; prints one JSON line
 * with elements/s for single updates, batch updates and single lookups (best of ROUNDS). */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct key { uint32_t addr_be; uint16_t port_be; uint8_t proto; uint8_t pad; };
struct value { uint64_t packets; uint32_t id; uint32_t flags; };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s PIN ENTRIES ROUNDS\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[2]), rounds = atoi(argv[3]);
	int fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		fprintf(stderr, "bpf_obj_get %s: %s\n", argv[1], strerror(-fd));
		return 1;
	}
	struct key *keys = calloc(n, sizeof(*keys));
	struct value *values = calloc(n, sizeof(*values));
	for (int i = 0; i < n; i++) {
		/* 10.(i>>16).(i>>8).i, port 80, TCP: the keys the TypeScript bench writes */
		uint32_t a = (10u << 24) | ((i >> 16 & 255) << 16) | ((i >> 8 & 255) << 8) | (i & 255);
		keys[i].addr_be = __builtin_bswap32(a);
		keys[i].port_be = __builtin_bswap16(80);
		keys[i].proto = 6;
		values[i].packets = i;
		values[i].id = i;
	}
	double single = 1e9, batch = 1e9, lookup = 1e9;
	for (int r = 0; r < rounds; r++) {
		double t0 = now();
		for (int i = 0; i < n; i++) {
			int err = bpf_map_update_elem(fd, &keys[i], &values[i], BPF_ANY);
			if (err) {
				fprintf(stderr, "update: %s\n", strerror(-err));
				return 1;
			}
		}
		double t1 = now();
		for (int i = 0; i < n; i++) bpf_map_lookup_elem(fd, &keys[i], &values[i]);
		double t2 = now();
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		for (int done = 0; done < n;) {
			__u32 count = n - done > 4096 ? 4096 : n - done;
			int err = bpf_map_update_batch(fd, &keys[done], &values[done], &count, &opts);
			if (err) {
				fprintf(stderr, "update batch: %s\n", strerror(-err));
				return 1;
			}
			done += count;
		}
		double t3 = now();
		if (t1 - t0 < single) single = t1 - t0;
		if (t2 - t1 < lookup) lookup = t2 - t1;
		if (t3 - t2 < batch) batch = t3 - t2;
	}
	printf("{\"single\": %.0f, \"lookup\": %.0f, \"batch\": %.0f}\n", n / single, n / lookup,
	       n / batch);
	return 0;
}
