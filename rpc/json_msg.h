/* The proto3 JSON mapping of fulgur.v1 messages, as the CLI's --json and
 * fulgurd's HTTP API both print them (lowerCamelCase names, enums by name,
 * every field present, map fields as objects). One source, so the two
 * outputs cannot drift apart. */
#ifndef FG_JSON_MSG_H
#define FG_JSON_MSG_H

#include "fulgur/v1/jobs.pb-c.h"
#include "json.h"

void fg__json_job(fg_json_writer *w, const Fulgur__V1__Job *j);
void fg__json_event(fg_json_writer *w, const Fulgur__V1__JobEvent *e);

#endif
