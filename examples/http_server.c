/* SPDX-License-Identifier: MIT */
/*
 * http_server: HTTP/1.1 keep-alive "Hello, World!" server, one fiber per
 * connection (examples/http_conn.h has the protocol, examples/serve.h
 * the accept loop).
 *
 *   http_server [-p PORT] [-w WORKERS] [-a ADDR]    defaults 8080, one worker per core, 127.0.0.1
 *   curl http://127.0.0.1:8080/
 *   wrk -c64 -d5s http://127.0.0.1:8080/
 */
#include "http_conn.h"

int main(int argc, char **argv)
{
	return serve_main(argc, argv, "http_server", HTTP_PORT_DEFAULT, http_conn_fiber);
}
