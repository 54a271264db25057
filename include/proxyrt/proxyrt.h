/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_PROXYRT_H
#define PROXYRT_PROXYRT_H

/* Umbrella header: everything proxyrt offers. */
#include <proxyrt/common.h>
#include <proxyrt/version.h>
#include <proxyrt/runtime.h>
#include <proxyrt/fiber.h>
#include <proxyrt/mutex.h>
#include <proxyrt/sem.h>
#include <proxyrt/rwlock.h>
#include <proxyrt/waitgroup.h>
#include <proxyrt/io.h>

#endif
