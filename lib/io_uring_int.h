/* SPDX-License-Identifier: MIT */
#ifndef PRT_IO_URING_INT_H
#define PRT_IO_URING_INT_H

/* io_uring.c: what receive streams (stream.c) use of the ring. */

#include <liburing.h>

struct prt__worker;

/*
 * For stream.c: an SQE of @w's ring (the worker's own thread), with room
 * for @n - 1 more taken with io_uring_get_sqe (nothing is submitted or
 * reaped between them).
 */
struct io_uring_sqe *prt__io_sqe(struct prt__worker *w, unsigned n);

#endif
