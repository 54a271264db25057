/* SPDX-License-Identifier: MIT */
#ifndef PRT_WAITGROUP_INT_H
#define PRT_WAITGROUP_INT_H

/* waitgroup.c's calls for the rest of the library. */

/* A fiber of prt_waitgroup_spawn ends (fiber.c): count it done in its group @wg. */
void prt__waitgroup_done(void *wg);

#endif
