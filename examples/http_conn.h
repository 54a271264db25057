/* SPDX-License-Identifier: MIT */
/*
 * A minimal HTTP/1.1 keep-alive server connection, shared by
 * examples/http_server.c, bench/proxyrt_bench.c (`http raw`, workload W6
 * of bench/peers/README.md) and tests/test_http.c.
 *
 * One resource: `GET /` answers HTTP_RESPONSE_200 ("Hello, World!"); any
 * other well-formed request answers HTTP_RESPONSE_404. Host is not
 * required: there is nothing to choose between.
 *
 * Pipelining: every complete request in what one read brought is
 * answered, in order, and the answers go out in one write. A request
 * body (Content-Length) is read and thrown away; Transfer-Encoding is
 * refused, since without decoding chunks we could not tell where the
 * next request starts.
 *
 * A malformed request (request line, version other than HTTP/1.x, a bad
 * header line, a bad or too large Content-Length, a header block over
 * HTTP_HDR_MAX bytes) answers HTTP_RESPONSE_400 after the answers before
 * it, and the connection is closed. So is one that asked for
 * `Connection: close` (or HTTP/1.0 without keep-alive), once answered.
 * A client that goes away (reset, EOF in the middle of a request) ends
 * only its own connection fiber.
 */
#ifndef PRT_EXAMPLES_HTTP_CONN_H
#define PRT_EXAMPLES_HTTP_CONN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <proxyrt/proxyrt.h>

#include "serve.h"

#define HTTP_PORT_DEFAULT 8080

#define HTTP_RESPONSE_200                                                                \
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
#define HTTP_RESPONSE_404 "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
#define HTTP_RESPONSE_400                                                                \
	"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

/* Longest header block: request line, header lines and the empty line. */
#define HTTP_HDR_MAX 8192
/* Largest Content-Length accepted. The body is skipped, never stored. */
#define HTTP_BODY_MAX (1u << 20)
/*
 * Input buffer: more than a whole header block, so a block that is too
 * long is seen as such rather than as a full buffer.
 */
#define HTTP_IN_SIZE (2 * HTTP_HDR_MAX)
/* Answers queued for one write; more pipelined answers than fit flush early. */
#define HTTP_OUT_SIZE 16384
/* Lingering close: read and drop the client's input for at most this long / much. */
#define HTTP_LINGER_NS (1000u * 1000u * 1000u)
#define HTTP_LINGER_BYTES (256u * 1024u)

/* What one request asked for. */
struct http_req {
	uint64_t body_len;	/* Content-Length, 0 without one */
	int keep_alive;		/* the connection stays open after the answer */
	int hello;		/* GET / */
};

/* A connection's buffers: 32 KiB, so on the heap rather than the fiber stack. */
struct http_conn {
	int fd;
	prt_stream_t *rs;	/* reads the socket (proxyrt/io.h), or NULL */
	size_t in_len;		/* bytes in in[] not consumed yet */
	size_t out_len;		/* bytes in out[] not written yet */
	uint64_t skip;		/* bytes of the current request's body still to drop */
	char in[HTTP_IN_SIZE];
	char out[HTTP_OUT_SIZE];
};

/* What the connection does after a batch: keep reading, close politely, or drop. */
enum { HTTP_KEEP, HTTP_CLOSE, HTTP_DROP };

/* RFC 9110 token characters (method, header name). */
static inline int http_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Field-value characters: HTAB, visible ASCII, space, obs-text. No CR, LF or NUL. */
static inline int http_vchar(unsigned char ch)
{
	return ch == '\t' || (ch >= ' ' && ch != 0x7f);
}

/* @p[0..@n) equals the lowercase @lit, ignoring case. */
static inline int http_is(const char *p, size_t n, const char *lit)
{
	return n == strlen(lit) && !strncasecmp(p, lit, n);
}

/*
 * Length of the header block at the start of @buf (up to and including
 * the CRLF CRLF), 0 if it is not complete yet, -1 if it is longer than
 * HTTP_HDR_MAX.
 */
static inline long http_head_len(const char *buf, size_t len)
{
	size_t n = len < HTTP_HDR_MAX ? len : HTTP_HDR_MAX;
	const char *end = memmem(buf, n, "\r\n\r\n", 4);

	if (end)
		return end + 4 - buf;
	return len >= HTTP_HDR_MAX ? -1 : 0;
}

/* `METHOD SP TARGET SP HTTP/1.x` in [@p, @eol). Returns 0 or -1. */
static inline int http_request_line(const char *p, const char *eol, struct http_req *r)
{
	const char *method = p, *target;
	size_t mlen, tlen;

	while (p < eol && http_tchar((unsigned char)*p))
		p++;
	mlen = (size_t)(p - method);
	if (!mlen || p == eol || *p++ != ' ')
		return -1;
	target = p;
	while (p < eol && (unsigned char)*p > ' ' && (unsigned char)*p < 0x7f)
		p++;
	tlen = (size_t)(p - target);
	if (!tlen || p == eol || *p++ != ' ')
		return -1;
	if (eol - p != 8 || memcmp(p, "HTTP/1.", 7) || p[7] < '0' || p[7] > '9')
		return -1;
	r->keep_alive = p[7] >= '1'; /* HTTP/1.0 closes unless asked not to */
	r->hello = mlen == 3 && !memcmp(method, "GET", 3) && target[0] == '/' &&
		   (tlen == 1 || target[1] == '?');
	return 0;
}

/* Content-Length: 1*DIGIT, at most HTTP_BODY_MAX. Returns the length or -1. */
static inline int64_t http_content_length(const char *v, size_t n)
{
	int64_t len = 0;

	if (!n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		len = len * 10 + (v[i] - '0');
		if (len > HTTP_BODY_MAX)
			return -1;
	}
	return len;
}

/* The tokens of a Connection header: close beats keep-alive. */
static inline void http_connection(const char *v, size_t n, struct http_req *r, int *close)
{
	const char *end = v + n;

	while (v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *e = comma ? comma : end;
		const char *s = v;

		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (http_is(s, (size_t)(e - s), "close"))
			*close = 1;
		else if (http_is(s, (size_t)(e - s), "keep-alive"))
			r->keep_alive = 1;
		v = comma ? comma + 1 : end;
	}
}

/*
 * One header line [@p, @eol): `name: OWS value OWS`. A line starting with
 * white space (obsolete folding) fails the name check. Returns 0 or -1.
 */
static inline int http_header(const char *p, const char *eol, struct http_req *r,
			      int64_t *clen, int *close)
{
	const char *name = p, *v, *e;
	size_t nlen;

	while (p < eol && http_tchar((unsigned char)*p))
		p++;
	nlen = (size_t)(p - name);
	if (!nlen || p == eol || *p++ != ':')
		return -1;
	for (const char *q = p; q < eol; q++)
		if (!http_vchar((unsigned char)*q))
			return -1;
	v = p;
	e = eol;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (http_is(name, nlen, "content-length")) {
		int64_t len = http_content_length(v, (size_t)(e - v));

		/* Two different lengths: which one frames the body is anyone's guess. */
		if (len < 0 || (*clen >= 0 && *clen != len))
			return -1;
		*clen = len;
	} else if (http_is(name, nlen, "transfer-encoding")) {
		return -1;
	} else if (http_is(name, nlen, "connection")) {
		http_connection(v, (size_t)(e - v), r, close);
	}
	return 0;
}

/*
 * Parse the header block @head of @len bytes (from http_head_len) into @r.
 * Returns 0, or -1 if the request is malformed.
 */
static inline int http_parse_head(const char *head, size_t len, struct http_req *r)
{
	const char *end = head + len - 2; /* the final empty line */
	const char *eol = memmem(head, len, "\r\n", 2);
	int64_t clen = -1;
	int close = 0;

	if (http_request_line(head, eol, r))
		return -1;
	for (const char *p = eol + 2; p < end; p = eol + 2) {
		eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
		if (http_header(p, eol, r, &clen, &close))
			return -1;
	}
	r->body_len = clen < 0 ? 0 : (uint64_t)clen;
	if (close)
		r->keep_alive = 0;
	return 0;
}

/* Write the queued answers. Returns 0 or -errno. */
static inline int http_flush(struct http_conn *c)
{
	ssize_t n;

	size_t off = 0;

	/* send, not write: the socket path is shorter, and MSG_NOSIGNAL spares SIGPIPE. */
	while (off < c->out_len) {
		n = prt_send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
		if (n < 0) {
			c->out_len = 0;
			return (int)n;
		}
		off += (size_t)n;
	}
	c->out_len = 0;
	return 0;
}

/* Queue answer @s of @n bytes, flushing first if it does not fit. Returns 0 or -errno. */
static inline int http_queue(struct http_conn *c, const char *s, size_t n)
{
	int err;

	if (c->out_len + n > sizeof(c->out) && (err = http_flush(c)))
		return err;
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
	return 0;
}

#define HTTP_QUEUE(c, lit) http_queue((c), lit, sizeof(lit) - 1)

/*
 * Consume every complete request in c->in and queue its answer. Returns
 * HTTP_KEEP (read on; a partial request stays at the start of c->in),
 * HTTP_CLOSE (flush, then close: the last request was malformed or
 * asked for it) or HTTP_DROP (an early flush failed).
 */
static inline int http_feed(struct http_conn *c)
{
	size_t pos = 0;
	int ret = HTTP_KEEP;

	for (;;) {
		size_t avail = c->in_len - pos, d = c->skip < avail ? (size_t)c->skip : avail;
		struct http_req r;
		long head;

		pos += d;
		c->skip -= d;
		if (c->skip)
			break;
		/* RFC 9112 2.2: ignore empty lines before a request line. */
		while (c->in_len - pos >= 2 && c->in[pos] == '\r' && c->in[pos + 1] == '\n')
			pos += 2;
		head = http_head_len(c->in + pos, c->in_len - pos);
		if (!head)
			break;
		if (head < 0 || http_parse_head(c->in + pos, (size_t)head, &r)) {
			ret = HTTP_QUEUE(c, HTTP_RESPONSE_400) ? HTTP_DROP : HTTP_CLOSE;
			break;
		}
		if (r.hello ? HTTP_QUEUE(c, HTTP_RESPONSE_200) : HTTP_QUEUE(c, HTTP_RESPONSE_404)) {
			ret = HTTP_DROP;
			break;
		}
		pos += (size_t)head;
		c->skip = r.body_len;
		if (!r.keep_alive) {
			ret = HTTP_CLOSE;
			break;
		}
	}
	memmove(c->in, c->in + pos, c->in_len - pos);
	c->in_len -= pos;
	return ret;
}

/* Read from the connection: through its receive stream if it has one. */
static inline ssize_t http_recv(struct http_conn *c, void *buf, size_t n, uint64_t tmo)
{
	return c->rs ? prt_stream_recv(c->rs, buf, n, tmo) : prt_recv_timeout(c->fd, buf, n, 0, tmo);
}

/* End the receive stream (if any), then close the socket. */
static inline void http_close(struct http_conn *c)
{
	if (c->rs)
		prt_stream_close(c->rs);
	c->rs = NULL;
	prt_close(c->fd);
}

/*
 * Close after our last answer without losing it. Closing a socket whose
 * input has not all been read makes the kernel send RST, and a client
 * that gets the RST before it has read our answer loses the answer (RFC
 * 9112 9.6). So: send FIN, drop what still arrives until the client
 * closes too (or a time or byte limit), then close.
 */
static inline void http_linger_close(struct http_conn *c)
{
	uint64_t deadline = prt_now_ns() + HTTP_LINGER_NS;
	size_t dropped = 0;

	prt_shutdown(c->fd, SHUT_WR);
	while (dropped < HTTP_LINGER_BYTES) {
		uint64_t now = prt_now_ns();
		ssize_t n;

		if (now >= deadline)
			break;
		n = http_recv(c, c->in, sizeof(c->in), deadline - now);
		if (n <= 0)
			break;
		dropped += (size_t)n;
	}
	http_close(c);
}

/*
 * Serve HTTP on connected socket @fd until the client leaves or the
 * connection must close; closes @fd. Context: a fiber.
 */
static inline void http_serve_conn(int fd)
{
	struct http_conn *c = malloc(sizeof(*c));
	int st = HTTP_KEEP;

	if (!c) {
		prt_close(fd);
		return;
	}
	c->fd = fd;
	if (prt_stream_open(&c->rs, fd))
		c->rs = NULL; /* out of memory: plain reads */
	c->in_len = c->out_len = 0;
	c->skip = 0;
	while (st == HTTP_KEEP) {
		/* http_feed() leaves less than HTTP_HDR_MAX bytes: there is room. */
		ssize_t n = http_recv(c, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);

		if (n <= 0) {
			st = HTTP_DROP; /* EOF, reset, or cancelled: nobody to answer */
			break;
		}
		c->in_len += (size_t)n;
		st = http_feed(c);
		if (st != HTTP_DROP && http_flush(c))
			st = HTTP_DROP;
	}
	if (st == HTTP_CLOSE)
		http_linger_close(c);
	else
		http_close(c);
	free(c);
}

/* serve_loop.conn for HTTP: the fiber body of one connection. */
static inline void *http_conn_fiber(void *fd)
{
	http_serve_conn((int)(intptr_t)fd);
	return NULL;
}

#endif
