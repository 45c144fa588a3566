/* See json_msg.h. */
#include "json_msg.h"

static void json_enum(fg_json_writer *w, const ProtobufCEnumDescriptor *d, int v) {
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
  if (ev) fg__json_string(w, ev->name);
  else fg__json_int(w, v); /* proto3 JSON: unknown enum values as numbers */
}

static void json_progress(fg_json_writer *w, const Fulgur__V1__Progress *p) {
  static const Fulgur__V1__Progress none = FULGUR__V1__PROGRESS__INIT;
  if (p == NULL) p = &none;
  fg__json_begin_object(w);
  fg__json_key(w, "epoch"), fg__json_int64(w, p->epoch);
  fg__json_key(w, "globalStep"), fg__json_int64(w, p->global_step);
  fg__json_key(w, "totalSteps"), fg__json_int64(w, p->total_steps);
  fg__json_key(w, "split"), fg__json_string(w, p->split);
  fg__json_key(w, "batchIdx"), fg__json_int64(w, p->batch_idx);
  fg__json_key(w, "numBatches"), fg__json_int64(w, p->num_batches);
  fg__json_key(w, "maxEpochs"), fg__json_int64(w, p->max_epochs);
  fg__json_key(w, "percent"), fg__json_double(w, p->percent);
  fg__json_key(w, "etaSeconds"), fg__json_double(w, p->eta_seconds);
  fg__json_end_object(w);
}

void fg__json_job(fg_json_writer *w, const Fulgur__V1__Job *j) {
  fg__json_begin_object(w);
  fg__json_key(w, "id"), fg__json_string(w, j->id);
  fg__json_key(w, "name"), fg__json_string(w, j->name);
  fg__json_key(w, "stage"), json_enum(w, &fulgur__v1__stage__descriptor, (int)j->stage);
  fg__json_key(w, "state"), json_enum(w, &fulgur__v1__job_state__descriptor, (int)j->state);
  fg__json_key(w, "error"), fg__json_string(w, j->error);
  fg__json_key(w, "metrics");
  fg__json_begin_object(w);
  for (size_t i = 0; i < j->n_metrics; i++)
    fg__json_key(w, j->metrics[i]->key), fg__json_double(w, j->metrics[i]->value);
  fg__json_end_object(w);
  fg__json_key(w, "progress"), json_progress(w, j->progress);
  fg__json_key(w, "createTimeNs"), fg__json_int64(w, j->create_time_ns);
  fg__json_key(w, "startTimeNs"), fg__json_int64(w, j->start_time_ns);
  fg__json_key(w, "endTimeNs"), fg__json_int64(w, j->end_time_ns);
  fg__json_key(w, "idempotencyKey"), fg__json_string(w, j->idempotency_key);
  fg__json_key(w, "lastSeq"), fg__json_uint64(w, j->last_seq);
  fg__json_key(w, "runDir"), fg__json_string(w, j->run_dir);
  fg__json_key(w, "lastCheckpoint"), fg__json_string(w, j->last_checkpoint);
  fg__json_key(w, "exitSignal"), fg__json_string(w, j->exit_signal);
  fg__json_key(w, "exitCode"), fg__json_int(w, j->exit_code);
  fg__json_key(w, "attempts"), fg__json_uint(w, j->attempts);
  fg__json_key(w, "maxRestarts"), fg__json_uint(w, j->max_restarts);
  fg__json_key(w, "failures");
  fg__json_begin_array(w);
  for (size_t i = 0; i < j->n_failures; i++) {
    const Fulgur__V1__AttemptFailure *f = j->failures[i];
    fg__json_begin_object(w);
    fg__json_key(w, "attempt"), fg__json_uint(w, f->attempt);
    fg__json_key(w, "reason"), fg__json_string(w, f->reason);
    fg__json_key(w, "exitSignal"), fg__json_string(w, f->exit_signal);
    fg__json_key(w, "exitCode"), fg__json_int(w, f->exit_code);
    fg__json_key(w, "timeNs"), fg__json_int64(w, f->time_ns);
    fg__json_end_object(w);
  }
  fg__json_end_array(w);
  fg__json_key(w, "parentId"), fg__json_string(w, j->parent_id);
  fg__json_key(w, "parentCheckpoint"), fg__json_string(w, j->parent_checkpoint);
  fg__json_end_object(w);
}

static void json_scalars(fg_json_writer *w, const Fulgur__V1__Scalars *s) {
  fg__json_begin_object(w);
  fg__json_key(w, "values");
  fg__json_begin_object(w);
  for (size_t i = 0; i < s->n_values; i++)
    fg__json_key(w, s->values[i]->key), fg__json_double(w, s->values[i]->value);
  fg__json_end_object(w);
  fg__json_key(w, "split"), fg__json_string(w, s->split);
  fg__json_key(w, "epoch"), fg__json_int64(w, s->epoch);
  fg__json_key(w, "globalStep"), fg__json_int64(w, s->global_step);
  fg__json_key(w, "batchIdx"), fg__json_int64(w, s->batch_idx);
  fg__json_end_object(w);
}

void fg__json_event(fg_json_writer *w, const Fulgur__V1__JobEvent *e) {
  fg__json_begin_object(w);
  fg__json_key(w, "seq"), fg__json_uint64(w, e->seq);
  fg__json_key(w, "jobId"), fg__json_string(w, e->job_id);
  fg__json_key(w, "timeNs"), fg__json_int64(w, e->time_ns);
  switch (e->kind_case) {
  case FULGUR__V1__JOB_EVENT__KIND_STATE:
    fg__json_key(w, "state");
    fg__json_begin_object(w);
    fg__json_key(w, "state"), json_enum(w, &fulgur__v1__job_state__descriptor, (int)e->state->state);
    fg__json_key(w, "message"), fg__json_string(w, e->state->message);
    fg__json_end_object(w);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_STEP:
    fg__json_key(w, "step"), json_scalars(w, e->step);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_EPOCH:
    fg__json_key(w, "epoch"), json_scalars(w, e->epoch);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_LOG:
    fg__json_key(w, "log");
    fg__json_begin_object(w);
    fg__json_key(w, "level"), json_enum(w, &fulgur__v1__log_line__level__descriptor, (int)e->log->level);
    fg__json_key(w, "text"), fg__json_string(w, e->log->text);
    fg__json_end_object(w);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_ARTIFACT:
    fg__json_key(w, "artifact");
    fg__json_begin_object(w);
    fg__json_key(w, "kind"), fg__json_string(w, e->artifact->kind);
    fg__json_key(w, "path"), fg__json_string(w, e->artifact->path);
    fg__json_end_object(w);
    break;
  default: break;
  }
  fg__json_end_object(w);
}
