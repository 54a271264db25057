/* SPDX-License-Identifier: MIT */
#ifndef PRT_SIGNAL_INT_H
#define PRT_SIGNAL_INT_H

struct prt__fiber;
struct prt__worker;

/*
 * signal.c. The SIGSEGV/SIGBUS handler reporting guard-page overflows,
 * held by every live runtime (0 or -errno); each worker thread's
 * alternate signal stack.
 */
int prt__overflow_handler_get(void);
void prt__overflow_handler_put(void);
void prt__sigstack_init(struct prt__worker *w);
void prt__sigstack_fini(struct prt__worker *w);
/* Write the overflow message for @f (async-signal-safe) and abort. */
__attribute__((noreturn)) void prt__report_overflow(const struct prt__fiber *f, const char *how,
						    const void *addr);

#endif
