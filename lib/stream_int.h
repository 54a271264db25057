/* SPDX-License-Identifier: MIT */
#ifndef PRT_STREAM_INT_H
#define PRT_STREAM_INT_H

/* stream.c: what the io_uring reaper calls (docs/design.md, section 2: the io_uring.c/stream.c pair). */

#include <proxyrt/io.h>

struct prt__worker;

/* A CQE of stream @s's receive reaped on @w; returns fibers woken. */
int prt__stream_cqe(struct prt__worker *w, struct prt_stream *s, int res, unsigned flags);
/* The CQE of stream @s's end watch (its one poll) reaped on @w; returns fibers woken. */
int prt__stream_end_cqe(struct prt__worker *w, struct prt_stream *s, int res);
/* Release @w's provided-buffer ring mapping (the ring is gone). */
void prt__stream_bufs_fini(struct prt__worker *w);

#endif
