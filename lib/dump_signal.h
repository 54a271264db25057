/* SPDX-License-Identifier: MIT */
#ifndef PRT_DUMP_SIGNAL_H
#define PRT_DUMP_SIGNAL_H

struct prt_runtime;

/*
 * dump_signal.c. The dump signal of cfg.dump_signal, which
 * config_check() has validated: 0, -EAGAIN (no free slot) or -errno;
 * nothing to undo on failure; rt->dump_slot stays -1 without one.
 */
int prt__dump_signal_init(struct prt_runtime *rt, int sig);
void prt__dump_signal_fini(struct prt_runtime *rt);

#endif
