/* The remote commands of `fulgur` (submit, jobs, status, watch, cancel,
 * pause, resume, events): gRPC calls to a fulgurd daemon. */
#ifndef FG_CLIENT_REMOTE_H
#define FG_CLIENT_REMOTE_H

#include <stdio.h>

/* Runs the command line when it names a remote command (global options
 * --server, --token-file, --tls-ca, --tls-server-name and --json may come
 * anywhere, before the command too) and returns the exit status. Returns
 * -1, having printed nothing, when the command is not a remote one. */
int fg__cli_remote_main(int argc, char **argv);

/* The remote commands' part of the usage text. */
void fg__cli_remote_usage(FILE *f);

#endif
