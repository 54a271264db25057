/* SPDX-License-Identifier: MIT */
#ifndef PRT_OFFLOAD_H
#define PRT_OFFLOAD_H

struct prt_runtime;

/*
 * offload.c. Runtime destroy: stop @rt's offload helper threads (each
 * finishes the job it runs; no job is queued then: every fiber ended),
 * join them and free the pool. Nothing if no offload ran.
 */
void prt__offload_fini(struct prt_runtime *rt);

#endif
