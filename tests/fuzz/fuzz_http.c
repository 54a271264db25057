/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the request parser of examples/http_conn.h:
 * http_feed() and what it calls, driven the way http_serve_conn() drives
 * it, without a runtime and without sockets.
 *
 * Input: byte 0 says how the client's bytes are cut into reads, byte 1
 * how the answers are written (whole, in pieces, failing at one write);
 * the rest is what the client sends.
 *
 * Every input is served three times:
 *   A. cut and written as bytes 0 and 1 say;
 *   B. the reference: each read fills all the room there is, every write
 *      is whole. Its answers must be whole known responses, a 400 only
 *      last and only before a close; A must give the same bytes and end
 *      the same way (or, if one of A's writes failed, a prefix of them,
 *      then drop): how a stream is split must not change what it means;
 *   C. a model: bytes 2.. pick requests from a table of requests with
 *      known answers; the stream is cut and written as in A and must be
 *      answered exactly as the table says.
 * After every http_feed() the connection's own invariants are checked.
 * Any violation is an abort(), which libFuzzer reports as a crash.
 *
 * http_flush() sends with prt_send(). This file defines prt_send() itself
 * and the target is not linked with libproxyrt: the answers land in
 * memory, where they can be checked, and a write can be made to fail or
 * come up short on demand, which no socket does reliably.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_conn.h"

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif

#ifdef FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The "socket" of every connection here; prt_send() checks it gets this one. */
#define FUZZ_FD 1000

/* How a drive ended: http_feed()'s HTTP_CLOSE or HTTP_DROP, or the client's EOF. */
#define END_EOF (HTTP_DROP + 1)

/* At most this many requests from the model table per input. */
#define MODEL_MAX 64

#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz_http: %s:%d: check failed: %s\n", __FILE__,   \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* xorshift32: chunk and write sizes, reproducible from the input alone. */
static uint32_t rng_next(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* How the client's bytes arrive: each read fills the room, or random sizes up to a cap. */
struct reader {
	size_t cap;		/* 0: fill the room */
	uint32_t rng;
};

/*
 * Byte 0: the low nibble picks the cap, the whole byte seeds the sizes.
 * The caps put cuts inside tokens, between CR and LF, around HTTP_HDR_MAX.
 */
static void reader_init(struct reader *r, uint8_t b)
{
	static const size_t caps[16] = { 0, 1, 2, 3, 5, 8, 16, 17, 64, 100, 255, 512, 1000,
					 4096, 8191, 12000 };

	r->cap = caps[b & 15];
	r->rng = (0x9e3779b9u ^ (uint32_t)b * 0x01000193u) | 1; /* xorshift32 sticks at 0 */
}

/* Size of the next read when @room bytes are free: 1..@room. */
static size_t reader_next(struct reader *r, size_t room)
{
	size_t n;

	if (!r->cap)
		return room;
	n = 1 + rng_next(&r->rng) % r->cap;
	return n < room ? n : room;
}

/* Where the answers go: prt_send() appends them here. */
struct sink {
	char *buf;
	size_t len, cap;
	bool partial;		/* writes take a random part of what is offered */
	int fail_at;		/* this write (0-based) fails; -1: none does */
	int sends;
	bool failed;		/* a write failed */
	uint32_t rng;
};

/* Byte 1: bit 0 short writes, bit 1 a failing write, bits 2..7 which one. */
static void sink_init(struct sink *s, uint8_t b)
{
	*s = (struct sink){ .partial = b & 1, .fail_at = (b & 2) ? b >> 2 : -1,
			    .rng = 0x2545f491u ^ (uint32_t)b << 8 };
}

static void sink_reset(struct sink *s)
{
	free(s->buf);
	s->buf = NULL;
}

static struct sink *cur_sink;

/* The only proxyrt call http_feed() and http_flush() make. See the top of the file. */
ssize_t prt_send(int fd, const void *buf, size_t n, int flags)
{
	struct sink *s = cur_sink;

	FUZZ_CHECK(s && fd == FUZZ_FD && flags == MSG_NOSIGNAL);
	/* http_flush() has something to write whenever it calls; a 0-byte send would spin. */
	FUZZ_CHECK(n > 0 && n <= HTTP_OUT_SIZE);
	if (s->sends++ == s->fail_at) {
		s->failed = true;
		return -ECONNRESET;
	}
	if (s->partial)
		n = 1 + rng_next(&s->rng) % n;
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
		FUZZ_CHECK(s->buf);
	}
	memcpy(s->buf + s->len, buf, n);
	s->len += n;
	return (ssize_t)n;
}

/*
 * The bytes past in_len are garbage to the parser. Under ASan, reading
 * them is an error; elsewhere they are CR LF pairs, so that a read past
 * the end finds a header block that is not there and the answers differ
 * from the reference run.
 */
static void mark_stale(struct http_conn *c)
{
#ifdef FUZZ_ASAN
	ASAN_POISON_MEMORY_REGION(c->in + c->in_len, sizeof(c->in) - c->in_len);
#else
	for (size_t i = c->in_len; i < sizeof(c->in); i++)
		c->in[i] = (i & 1) ? '\n' : '\r';
#endif
}

static void unmark_stale(struct http_conn *c)
{
#ifdef FUZZ_ASAN
	ASAN_UNPOISON_MEMORY_REGION(c->in, sizeof(c->in));
#else
	(void)c;
#endif
}

/* What http_feed() promises about the connection it returns with status @st. */
static void check_conn(const struct http_conn *c, int st)
{
	FUZZ_CHECK(st == HTTP_KEEP || st == HTTP_CLOSE || st == HTTP_DROP);
	FUZZ_CHECK(c->in_len <= sizeof(c->in));
	FUZZ_CHECK(c->out_len <= sizeof(c->out));
	FUZZ_CHECK(c->skip <= HTTP_BODY_MAX);
	/* A drop means a write failed: the parser itself never gives up silently. */
	FUZZ_CHECK(st != HTTP_DROP || cur_sink->failed);
	if (st != HTTP_KEEP)
		return;
	/* http_serve_conn() reads into the room this leaves (see there). */
	FUZZ_CHECK(c->in_len < HTTP_HDR_MAX);
	/* A body still to skip swallows everything that has come. */
	FUZZ_CHECK(!c->skip || !c->in_len);
}

/*
 * Serve @n bytes from @p on @c as http_serve_conn() does, reads cut by
 * @rd, answers written to @s. Returns HTTP_CLOSE, HTTP_DROP or END_EOF.
 * @recheck: after each HTTP_KEEP, feed once more with no new bytes,
 * which must change nothing (every complete request was answered).
 */
static int drive(struct http_conn *c, const uint8_t *p, size_t n, struct reader *rd,
		 struct sink *s, bool recheck)
{
	int st = HTTP_KEEP;

	c->fd = FUZZ_FD;
	c->in_len = c->out_len = 0;
	c->skip = 0;
	cur_sink = s;
	while (st == HTTP_KEEP) {
		size_t room = sizeof(c->in) - c->in_len, k = reader_next(rd, room);

		if (k > n)
			k = n;
		if (!k)
			return END_EOF; /* the server then drops: nobody to answer */
		unmark_stale(c);
		memcpy(c->in + c->in_len, p, k);
		p += k;
		n -= k;
		c->in_len += k;
		mark_stale(c);
		st = http_feed(c);
		check_conn(c, st);
		if (st == HTTP_KEEP && recheck) {
			size_t in_len = c->in_len, out_len = c->out_len;
			uint64_t skip = c->skip;

			FUZZ_CHECK(http_feed(c) == HTTP_KEEP);
			FUZZ_CHECK(c->in_len == in_len && c->out_len == out_len &&
				   c->skip == skip);
		}
		if (st != HTTP_DROP && http_flush(c))
			st = HTTP_DROP;
		FUZZ_CHECK(c->out_len == 0);
	}
	return st;
}

/* @a (@alen bytes) equals @b (@blen). Either may be NULL when empty, unlike for memcmp(). */
static bool same(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (!alen || !memcmp(a, b, alen));
}

/* Length of response @lit if @p (@n bytes) starts with it, else 0. */
static size_t starts(const char *p, size_t n, const char *lit)
{
	size_t l = strlen(lit);

	return n >= l && !memcmp(p, lit, l) ? l : 0;
}

/* Answers @out of a drive that ended @end with no failed write: known responses, 400 last. */
static void check_answers(const char *out, size_t len, int end)
{
	bool bad = false;

	FUZZ_CHECK(end == HTTP_CLOSE || end == END_EOF);
	for (size_t pos = 0, l; pos < len; pos += l) {
		FUZZ_CHECK(!bad); /* nothing after a 400 */
		if ((l = starts(out + pos, len - pos, HTTP_RESPONSE_400)))
			bad = true;
		else if (!(l = starts(out + pos, len - pos, HTTP_RESPONSE_200)))
			l = starts(out + pos, len - pos, HTTP_RESPONSE_404);
		FUZZ_CHECK(l);
	}
	/* A 400 closes; a close answers something first. */
	FUZZ_CHECK(!bad || end == HTTP_CLOSE);
	FUZZ_CHECK(end != HTTP_CLOSE || len);
}

/* Requests with known answers; @close: the connection ends after the answer. */
static const struct model_req {
	const char *req, *resp;
	bool close;
} model[] = {
	{ "GET / HTTP/1.1\r\n\r\n", HTTP_RESPONSE_200, false },
	{ "GET /?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_RESPONSE_200, false },
	{ "GET /a HTTP/1.1\r\n\r\n", HTTP_RESPONSE_404, false },
	{ "HEAD / HTTP/1.1\r\n\r\n", HTTP_RESPONSE_404, false },
	{ "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", HTTP_RESPONSE_404, false },
	{ "POST /x HTTP/1.1\r\ncontent-length:\t0 \r\n\r\n", HTTP_RESPONSE_404, false },
	/* A body that looks like a request is still a body. */
	{ "PUT / HTTP/1.1\r\nContent-Length: 18\r\nContent-Length: 18\r\n\r\n"
	  "GET / HTTP/1.1\r\n\r\n", HTTP_RESPONSE_404, false },
	{ "\r\n", "", false },
	{ "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", HTTP_RESPONSE_200, false },
	{ "GET / HTTP/1.1\r\nConnection: foo , keep-alive\r\n\r\n", HTTP_RESPONSE_200, false },
	{ "GET / HTTP/1.1\r\nX-Empty:\r\nUser-Agent: f\xe9z\r\n\r\n", HTTP_RESPONSE_200, false },
	{ "GET / HTTP/1.0\r\n\r\n", HTTP_RESPONSE_200, true },
	{ "GET /b HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", HTTP_RESPONSE_404, true },
	{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_RESPONSE_400, true },
	{ "GET / HTTP/2.0\r\n\r\n", HTTP_RESPONSE_400, true },
	{ "GET /\r\n\r\n", HTTP_RESPONSE_400, true },
	{ "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", HTTP_RESPONSE_400, true },
	{ "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	  HTTP_RESPONSE_400, true },
	{ "GET / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", HTTP_RESPONSE_400, true },
	{ "GET / HTTP/1.1\nHost: x\r\n\r\n", HTTP_RESPONSE_400, true },
};

#define MODEL_N (sizeof(model) / sizeof(model[0]))

/* Build the stream bytes @sel pick from the model table and serve it as @b0, @b1 say. */
static void check_model(struct http_conn *c, const uint8_t *sel, size_t n, uint8_t b0,
			uint8_t b1)
{
	char *req, *want;
	size_t rlen = 0, wlen = 0, rcap = 0, wcap = 0;
	bool close = false;
	struct reader rd;
	struct sink s;
	int end;

	if (n > MODEL_MAX)
		n = MODEL_MAX;
	for (size_t i = 0; i < n; i++) {
		rcap += strlen(model[sel[i] % MODEL_N].req);
		wcap += strlen(model[sel[i] % MODEL_N].resp);
	}
	req = malloc(rcap + 1);
	want = malloc(wcap + 1);
	FUZZ_CHECK(req && want);
	for (size_t i = 0; i < n && !close; i++) {
		const struct model_req *m = &model[sel[i] % MODEL_N];

		memcpy(req + rlen, m->req, strlen(m->req));
		rlen += strlen(m->req);
		memcpy(want + wlen, m->resp, strlen(m->resp));
		wlen += strlen(m->resp);
		close = m->close;
	}
	reader_init(&rd, b0);
	sink_init(&s, (uint8_t)(b1 & ~2)); /* no failing write: all answers must come */
	end = drive(c, (const uint8_t *)req, rlen, &rd, &s, false);
	FUZZ_CHECK(end == (close ? HTTP_CLOSE : END_EOF));
	FUZZ_CHECK(same(s.buf, s.len, want, wlen));
	/* Every request was whole, so nothing is left half-read. */
	FUZZ_CHECK(close || (c->in_len == 0 && c->skip == 0));
	sink_reset(&s);
	free(req);
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_conn *a, *b;
	struct reader rd_a, rd_b;
	struct sink s_a, s_b;
	const uint8_t *p;
	size_t n;
	int end_a, end_b;

	if (size < 2)
		return 0;
	p = data + 2;
	n = size - 2;
	/* On the heap like http_serve_conn()'s, so ASan sees the end of out[]. */
	a = malloc(sizeof(*a));
	b = malloc(sizeof(*b));
	FUZZ_CHECK(a && b);

	reader_init(&rd_b, 0);
	sink_init(&s_b, 0);
	end_b = drive(b, p, n, &rd_b, &s_b, false);
	check_answers(s_b.buf, s_b.len, end_b);

	reader_init(&rd_a, data[0]);
	sink_init(&s_a, data[1]);
	end_a = drive(a, p, n, &rd_a, &s_a, true);
	if (s_a.failed) {
		FUZZ_CHECK(end_a == HTTP_DROP);
		FUZZ_CHECK(s_a.len <= s_b.len && same(s_a.buf, s_a.len, s_b.buf, s_a.len));
	} else {
		FUZZ_CHECK(end_a == end_b);
		FUZZ_CHECK(same(s_a.buf, s_a.len, s_b.buf, s_b.len));
		/* At EOF both have read everything: the same partial request is left. */
		FUZZ_CHECK(end_a != END_EOF ||
			   (a->in_len == b->in_len && a->skip == b->skip &&
			    !memcmp(a->in, b->in, a->in_len)));
	}
	sink_reset(&s_a);
	sink_reset(&s_b);

	check_model(a, p, n, data[0], data[1]);

	unmark_stale(a);
	unmark_stale(b);
	free(a);
	free(b);
	return 0;
}
