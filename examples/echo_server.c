/* SPDX-License-Identifier: MIT */
/*
 * echo_server: sends back every byte it receives, one fiber per
 * connection, until the client closes (examples/echo_conn.h).
 *
 *   echo_server [-p PORT] [-w WORKERS] [-a ADDR]    defaults 7070, one worker per core, 127.0.0.1
 *   echo_client -c 1000 -n 100                      in another shell
 */
#include "echo_conn.h"

int main(int argc, char **argv)
{
	return serve_main(argc, argv, "echo_server", ECHO_PORT_DEFAULT, echo_conn_fiber);
}
