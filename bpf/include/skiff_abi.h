/* skiff_abi.h: every struct that crosses the kernel/user boundary, and nothing else.
 * The TypeScript codecs in agent/bpf/abi.ts mirror this file field by field; a test compiles
 * it, reads the BTF and fails on any offset or size difference. Padding is explicit and the
 * byte order of every address and port field is stated (network order = __be). */
#ifndef SKIFF_ABI_H
#define SKIFF_ABI_H

#include <linux/types.h>

/* ---- traffic counter (counter.c) ---- */

/* ---- service load balancing (sock_lb.c, tc_lb.c) ---- */

#endif /* SKIFF_ABI_H */
