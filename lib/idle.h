/* SPDX-License-Identifier: MIT */
#ifndef PRT_IDLE_H
#define PRT_IDLE_H

/* idle.c: the worker thread and its idle context. */

/* Thread entry of a worker. */
void *prt__worker_main(void *arg);

#endif
