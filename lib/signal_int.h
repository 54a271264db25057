/* SPDX-License-Identifier: MIT */
#ifndef PRT_SIGNAL_INT_H
#define PRT_SIGNAL_INT_H

struct prt__fiber;
struct prt__worker;
struct prt_runtime;

/*
 * signal.c. The SIGSEGV/SIGBUS handler reporting guard-page overflows,
 * held by every live runtime (0 or -errno); each worker thread's
 * alternate signal stack; the dump signal of cfg.dump_signal, which
 * config_check() has validated (0, -EAGAIN or -errno; nothing to undo
 * on failure; rt->dump_slot stays -1 without one).
 */
int prt__overflow_handler_get(void);
void prt__overflow_handler_put(void);
void prt__sigstack_init(struct prt__worker *w);
void prt__sigstack_fini(struct prt__worker *w);
int prt__dump_signal_init(struct prt_runtime *rt, int sig);
void prt__dump_signal_fini(struct prt_runtime *rt);
/* Write the overflow message for @f (async-signal-safe) and abort. */
__attribute__((noreturn)) void prt__report_overflow(const struct prt__fiber *f, const char *how,
						    const void *addr);

#endif
