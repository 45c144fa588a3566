/* The daemon's standard gRPC services as message handlers: reflection
 * (daemon/reflection.c) and health (daemon/health.c). No server runs here:
 * requests are packed into byte buffers as gRPC would deliver them. */
#include <criterion/criterion.h>
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fg_rpc.h"
#include "fulgur/error.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "health.h"
#include "reflection.h"

extern const unsigned char fg_descriptor_set[];
extern const size_t fg_descriptor_set_size;

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_req;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_resp;

static grpc_byte_buffer *raw_bb(const void *p, size_t n) {
  grpc_slice s = grpc_slice_from_copied_buffer(p, n);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* Answers bb (destroyed here) and unpacks the answer, which must parse. */
static refl_resp *answer_bb(const fgd_reflection *r, grpc_byte_buffer *bb) {
  grpc_byte_buffer *out = fgd_reflection_answer(r, bb);
  if (bb) grpc_byte_buffer_destroy(bb);
  cr_assert_not_null(out);
  refl_resp *resp = (refl_resp *)fg_rpc_unpack(
      &grpc__reflection__v1__server_reflection_response__descriptor, out);
  grpc_byte_buffer_destroy(out);
  cr_assert_not_null(resp, "the answer is not a ServerReflectionResponse");
  return resp;
}

static refl_resp *ask(const fgd_reflection *r, const refl_req *q) {
  return answer_bb(r, fg_rpc_pack(&q->base));
}

static refl_resp *ask_symbol(const fgd_reflection *r, const char *symbol) {
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
  q.file_containing_symbol = (char *)symbol;
  return ask(r, &q);
}

static refl_resp *ask_file(const fgd_reflection *r, const char *name) {
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
  q.file_by_filename = (char *)name;
  return ask(r, &q);
}

static void free_resp(refl_resp *resp) { protobuf_c_message_free_unpacked(&resp->base, NULL); }

static fgd_reflection *create_embedded(void) {
  fgd_reflection *r = NULL;
  char *err = NULL;
  int rc = fgd_reflection_create(&r, &err);
  cr_assert_eq(rc, 0, "fgd_reflection_create: %s", err ? err : "?");
  cr_assert_null(err);
  cr_assert_not_null(r);
  return r;
}

static void assert_error(const refl_resp *resp, int code) {
  cr_assert_eq(resp->message_response_case,
               GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
  cr_assert_eq(resp->error_response->error_code, code, "code %d, want %d (%s)",
               resp->error_response->error_code, code, resp->error_response->error_message);
  cr_assert_neq(resp->error_response->error_message[0], '\0', "an error says what failed");
}

/* The file names the answer holds, in order, unpacking each. */
static size_t answer_files(const refl_resp *resp, const char **names, size_t max) {
  cr_assert_eq(
      resp->message_response_case,
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE,
      "want a file_descriptor_response, got case %d (%s)", resp->message_response_case,
      resp->message_response_case ==
              GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE
          ? resp->error_response->error_message
          : "");
  const Grpc__Reflection__V1__FileDescriptorResponse *f = resp->file_descriptor_response;
  cr_assert_leq(f->n_file_descriptor_proto, max);
  for (size_t i = 0; i < f->n_file_descriptor_proto; i++) {
    Google__Protobuf__FileDescriptorProto *fd = google__protobuf__file_descriptor_proto__unpack(
        NULL, f->file_descriptor_proto[i].len, f->file_descriptor_proto[i].data);
    cr_assert_not_null(fd, "file %zu is not a FileDescriptorProto", i);
    names[i] = strdup(fd->name);
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
  }
  return f->n_file_descriptor_proto;
}

static const char *file_of(const fgd_reflection *r, const char *symbol) {
  static char name[256];
  refl_resp *resp = ask_symbol(r, symbol);
  const char *names[16];
  size_t n = answer_files(resp, names, 16);
  cr_assert_geq(n, 1);
  snprintf(name, sizeof name, "%s", names[0]);
  for (size_t i = 0; i < n; i++) free((char *)names[i]);
  free_resp(resp);
  return name;
}

/* ---- reflection over the embedded set ---------------------------------- */

Test(reflection, create_and_free) {
  fgd_reflection *r = create_embedded();
  fgd_reflection_free(r);
  fgd_reflection_free(NULL);
}

Test(reflection, list_services) {
  fgd_reflection *r = create_embedded();
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.host = "localhost:7070";
  q.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
  q.list_services = "*";
  refl_resp *resp = ask(r, &q);
  cr_assert_str_eq(resp->valid_host, "localhost:7070");
  cr_assert_not_null(resp->original_request);
  cr_assert_eq(resp->original_request->message_request_case, q.message_request_case);
  cr_assert_str_eq(resp->original_request->list_services, "*");
  cr_assert_eq(
      resp->message_response_case,
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
  const char *want[] = {"fulgur.v1.JobService", "grpc.health.v1.Health",
                        "grpc.reflection.v1.ServerReflection",
                        "grpc.reflection.v1alpha.ServerReflection"};
  const Grpc__Reflection__V1__ListServiceResponse *l = resp->list_services_response;
  for (size_t w = 0; w < sizeof want / sizeof *want; w++) {
    size_t seen = 0;
    for (size_t i = 0; i < l->n_service; i++) seen += strcmp(l->service[i]->name, want[w]) == 0;
    cr_expect_eq(seen, 1, "%s listed %zu times", want[w], seen);
  }
  /* worker.proto is private: its messages are not served. */
  for (size_t i = 0; i < l->n_service; i++)
    cr_expect(strstr(l->service[i]->name, "Worker") == NULL, "%s", l->service[i]->name);
  free_resp(resp);
  fgd_reflection_free(r);
}

Test(reflection, job_service_file) {
  fgd_reflection *r = create_embedded();
  refl_resp *resp = ask_symbol(r, "fulgur.v1.JobService");
  cr_assert_eq(
      resp->message_response_case,
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
  const Grpc__Reflection__V1__FileDescriptorResponse *f = resp->file_descriptor_response;
  /* jobs.proto imports nothing: the answer is that one file. */
  cr_assert_eq(f->n_file_descriptor_proto, 1);
  ProtobufCBinaryData b = f->file_descriptor_proto[0];
  /* Byte for byte what protoc wrote into the set. */
  cr_assert_not_null(memmem(fg_descriptor_set, fg_descriptor_set_size, b.data, b.len));

  Google__Protobuf__FileDescriptorProto *fd =
      google__protobuf__file_descriptor_proto__unpack(NULL, b.len, b.data);
  cr_assert_not_null(fd);
  cr_assert_str_eq(fd->name, "fulgur/v1/jobs.proto");
  cr_assert_str_eq(fd->package, "fulgur.v1");
  cr_assert_eq(fd->n_service, 1);
  const Google__Protobuf__ServiceDescriptorProto *s = fd->service[0];
  cr_assert_str_eq(s->name, "JobService");
  const char *methods[] = {"SubmitJob", "GetJob",    "ListJobs",      "CancelJob",
                           "PauseJob",  "ResumeJob", "WatchJob",      "ListJobEvents",
                           "CheckpointJob", "ForkJob"};
  cr_assert_eq(s->n_method, sizeof methods / sizeof *methods);
  for (size_t i = 0; i < s->n_method; i++) {
    cr_expect_str_eq(s->method[i]->name, methods[i]);
    bool streams = strcmp(methods[i], "WatchJob") == 0;
    cr_expect_eq(s->method[i]->has_server_streaming && s->method[i]->server_streaming, streams,
                 "%s", methods[i]);
  }
  cr_expect_str_eq(s->method[1]->input_type, ".fulgur.v1.GetJobRequest");
  cr_expect_str_eq(s->method[1]->output_type, ".fulgur.v1.Job");
  google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
  free_resp(resp);
  fgd_reflection_free(r);
}

Test(reflection, symbols_resolve) {
  fgd_reflection *r = create_embedded();
  const char *jobs[] = {
      "fulgur.v1.Job",               /* message */
      "fulgur.v1.JobService.GetJob", /* method */
      "fulgur.v1.Job.MetricsEntry",  /* nested (map entry) message */
      "fulgur.v1.LogLine.Level",     /* nested enum */
      "fulgur.v1.LogLine.WARNING",   /* its value, scoped beside it */
      "fulgur.v1.JobState",          /* enum */
      "fulgur.v1.RUNNING",           /* top-level enum value */
      "fulgur.v1.Job.metrics",       /* field */
      "fulgur.v1.JobEvent.kind",     /* oneof */
      ".fulgur.v1.Job",              /* a leading dot is tolerated */
  };
  for (size_t i = 0; i < sizeof jobs / sizeof *jobs; i++)
    cr_expect_str_eq(file_of(r, jobs[i]), "fulgur/v1/jobs.proto", "%s", jobs[i]);
  cr_expect_str_eq(file_of(r, "grpc.health.v1.Health.Check"), "grpc/health/v1/health.proto");
  cr_expect_str_eq(file_of(r, "grpc.health.v1.HealthCheckResponse.SERVING"),
                   "grpc/health/v1/health.proto");
  cr_expect_str_eq(file_of(r, "grpc.reflection.v1alpha.ServerReflection"),
                   "grpc/reflection/v1alpha/reflection.proto");
  cr_expect_str_eq(file_of(r, "grpc.reflection.v1.ServerReflectionRequest"),
                   "grpc/reflection/v1/reflection.proto");
  fgd_reflection_free(r);
}

Test(reflection, unknown_symbol_is_not_found) {
  fgd_reflection *r = create_embedded();
  const char *unknown[] = {"fulgur.v1.Nope",
                           "fulgur.v1",
                           "fulgur.v1.Jo",
                           "Job",
                           "",
                           "fulgur.v1.JobService.GetJob.x",
                           "fulgur.v1.WorkerMessage"};
  for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
    refl_resp *resp = ask_symbol(r, unknown[i]);
    assert_error(resp, GRPC_STATUS_NOT_FOUND);
    cr_assert_str_eq(resp->original_request->file_containing_symbol, unknown[i]);
    free_resp(resp);
  }
  refl_resp *resp = ask_symbol(r, "fulgur.v1.Nope");
  cr_expect(strstr(resp->error_response->error_message, "fulgur.v1.Nope") != NULL, "%s",
            resp->error_response->error_message);
  free_resp(resp);
  fgd_reflection_free(r);
}

Test(reflection, file_by_filename) {
  fgd_reflection *r = create_embedded();
  refl_resp *resp = ask_file(r, "grpc/health/v1/health.proto");
  const char *names[8];
  size_t n = answer_files(resp, names, 8);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(names[0], "grpc/health/v1/health.proto");
  free((char *)names[0]);
  free_resp(resp);

  resp = ask_file(r, "fulgur/v1/worker.proto");
  assert_error(resp, GRPC_STATUS_NOT_FOUND);
  free_resp(resp);
  resp = ask_file(r, "health.proto");
  assert_error(resp, GRPC_STATUS_NOT_FOUND);
  free_resp(resp);
  fgd_reflection_free(r);
}

Test(reflection, extensions) {
  fgd_reflection *r = create_embedded();
  Grpc__Reflection__V1__ExtensionRequest e = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
  e.containing_type = "fulgur.v1.Job";
  e.extension_number = 100;
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
  q.file_containing_extension = &e;
  refl_resp *resp = ask(r, &q);
  assert_error(resp, GRPC_STATUS_NOT_FOUND);
  free_resp(resp);

  /* A known message type has no extensions; an unknown one is NOT_FOUND. */
  q.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
  q.all_extension_numbers_of_type = "fulgur.v1.Job";
  resp = ask(r, &q);
  cr_assert_eq(
      resp->message_response_case,
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE);
  cr_assert_str_eq(resp->all_extension_numbers_response->base_type_name, "fulgur.v1.Job");
  cr_assert_eq(resp->all_extension_numbers_response->n_extension_number, 0);
  free_resp(resp);
  const char *not_types[] = {"fulgur.v1.Nope", "fulgur.v1.JobService", "fulgur.v1.JobState"};
  for (size_t i = 0; i < 3; i++) {
    q.all_extension_numbers_of_type = (char *)not_types[i];
    resp = ask(r, &q);
    assert_error(resp, GRPC_STATUS_NOT_FOUND);
    free_resp(resp);
  }
  fgd_reflection_free(r);
}

Test(reflection, malformed_requests) {
  fgd_reflection *r = create_embedded();
  /* Field 3 (file_by_filename) claims 5 bytes and has 1. */
  static const unsigned char truncated[] = {0x1a, 0x05, 'a'};
  refl_resp *resp = answer_bb(r, raw_bb(truncated, sizeof truncated));
  assert_error(resp, GRPC_STATUS_INVALID_ARGUMENT);
  cr_assert_null(resp->original_request);
  free_resp(resp);

  resp = answer_bb(r, NULL);
  assert_error(resp, GRPC_STATUS_INVALID_ARGUMENT);
  free_resp(resp);

  /* Well-formed but asks for nothing: only a host. */
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.host = "h";
  resp = ask(r, &q);
  assert_error(resp, GRPC_STATUS_INVALID_ARGUMENT);
  cr_assert_str_eq(resp->valid_host, "h");
  free_resp(resp);

  /* Random bytes: always some answer, never a crash (ASan watches). */
  srand(12345);
  unsigned char buf[64];
  for (int i = 0; i < 3000; i++) {
    size_t n = (size_t)(rand() % (int)sizeof buf);
    for (size_t j = 0; j < n; j++) buf[j] = (unsigned char)rand();
    /* Half the time start with a valid tag so more gets past the first byte. */
    if (n > 1 && i % 2) buf[0] = (unsigned char)(((3 + rand() % 5) << 3) | 2);
    resp = answer_bb(r, raw_bb(buf, n));
    cr_assert_neq(resp->message_response_case,
                  GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET);
    free_resp(resp);
  }
  fgd_reflection_free(r);
}

/* v1alpha clients get the same answers, read with v1alpha's types. */
Test(reflection, v1alpha_wire_compatible) {
  fgd_reflection *r = create_embedded();
  Grpc__Reflection__V1alpha__ServerReflectionRequest q =
      GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
  q.host = "x";
  q.message_request_case =
      GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
  q.file_containing_symbol = "fulgur.v1.JobService.WatchJob";
  grpc_byte_buffer *in = fg_rpc_pack(&q.base);
  grpc_byte_buffer *out = fgd_reflection_answer(r, in);
  grpc_byte_buffer_destroy(in);
  Grpc__Reflection__V1alpha__ServerReflectionResponse *resp =
      (Grpc__Reflection__V1alpha__ServerReflectionResponse *)fg_rpc_unpack(
          &grpc__reflection__v1alpha__server_reflection_response__descriptor, out);
  grpc_byte_buffer_destroy(out);
  cr_assert_not_null(resp);
  cr_assert_str_eq(resp->valid_host, "x");
  cr_assert_str_eq(resp->original_request->file_containing_symbol, "fulgur.v1.JobService.WatchJob");
  cr_assert_eq(
      resp->message_response_case,
      GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
  cr_assert_eq(resp->file_descriptor_response->n_file_descriptor_proto, 1);
  protobuf_c_message_free_unpacked(&resp->base, NULL);
  fgd_reflection_free(r);
}

/* ---- reflection over sets with imports ----------------------------------- */

typedef struct {
  Google__Protobuf__FileDescriptorProto f;
  Google__Protobuf__DescriptorProto m;
  Google__Protobuf__DescriptorProto *mp[1];
  Google__Protobuf__ServiceDescriptorProto s;
  Google__Protobuf__ServiceDescriptorProto *sp[1];
  Google__Protobuf__MethodDescriptorProto meth;
  Google__Protobuf__MethodDescriptorProto *methp[1];
} test_file;

/* A file `name` in package t with one message `msg`, importing deps; with
 * a service S (method M) when service is true. */
static void make_file(test_file *t, const char *name, const char *msg, char **deps, size_t n_deps,
                      bool service) {
  google__protobuf__file_descriptor_proto__init(&t->f);
  google__protobuf__descriptor_proto__init(&t->m);
  t->f.name = (char *)name;
  t->f.package = "t";
  t->f.syntax = "proto3";
  t->f.dependency = deps;
  t->f.n_dependency = n_deps;
  t->m.name = (char *)msg;
  t->mp[0] = &t->m;
  t->f.message_type = t->mp;
  t->f.n_message_type = 1;
  if (service) {
    google__protobuf__service_descriptor_proto__init(&t->s);
    google__protobuf__method_descriptor_proto__init(&t->meth);
    t->s.name = "S";
    t->meth.name = "M";
    t->meth.input_type = ".t.C";
    t->meth.output_type = ".t.B";
    t->methp[0] = &t->meth;
    t->s.method = t->methp;
    t->s.n_method = 1;
    t->sp[0] = &t->s;
    t->f.service = t->sp;
    t->f.n_service = 1;
  }
}

/* Packs files (in the given order) as a FileDescriptorSet; free the result. */
static uint8_t *pack_set(Google__Protobuf__FileDescriptorProto **files, size_t n, size_t *len) {
  Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
  set.file = files;
  set.n_file = n;
  *len = google__protobuf__file_descriptor_set__get_packed_size(&set);
  uint8_t *buf = malloc(*len);
  google__protobuf__file_descriptor_set__pack(&set, buf);
  return buf;
}

Test(reflection, transitive_dependencies) {
  /* a.proto -> b.proto -> c.proto, and a.proto -> c.proto directly; d.proto
   * stands apart. The set lists dependents first, to show order does not
   * matter to the index. */
  test_file a, b, c, d;
  char *a_deps[] = {"b.proto", "c.proto"};
  char *b_deps[] = {"c.proto"};
  make_file(&a, "a.proto", "A", a_deps, 2, true);
  make_file(&b, "b.proto", "B", b_deps, 1, false);
  make_file(&c, "c.proto", "C", NULL, 0, false);
  make_file(&d, "d.proto", "D", NULL, 0, false);
  Google__Protobuf__FileDescriptorProto *files[] = {&a.f, &d.f, &b.f, &c.f};
  size_t len;
  uint8_t *set = pack_set(files, 4, &len);

  fgd_reflection *r = NULL;
  char *err = NULL;
  cr_assert_eq(fgd_reflection_create_from(set, len, &r, &err), 0, "%s", err ? err : "");
  free(set); /* the index keeps its own copy */

  const char *names[8];
  refl_resp *resp = ask_symbol(r, "t.S.M");
  size_t n = answer_files(resp, names, 8);
  cr_assert_eq(n, 3, "a.proto and its two dependencies, each once");
  cr_assert_str_eq(names[0], "a.proto", "the requested file comes first");
  bool has_b = false, has_c = false;
  for (size_t i = 1; i < n; i++) {
    has_b |= strcmp(names[i], "b.proto") == 0;
    has_c |= strcmp(names[i], "c.proto") == 0;
  }
  cr_assert(has_b && has_c);
  for (size_t i = 0; i < n; i++) free((char *)names[i]);
  free_resp(resp);

  resp = ask_file(r, "b.proto");
  n = answer_files(resp, names, 8);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(names[0], "b.proto");
  cr_assert_str_eq(names[1], "c.proto");
  for (size_t i = 0; i < n; i++) free((char *)names[i]);
  free_resp(resp);

  cr_assert_str_eq(file_of(r, "t.D"), "d.proto");
  fgd_reflection_free(r);
}

Test(reflection, bad_sets_are_refused) {
  test_file a, b;
  char *a_deps[] = {"missing.proto"};
  make_file(&a, "a.proto", "A", a_deps, 1, false);
  make_file(&b, "b.proto", "B", NULL, 0, false);
  size_t len;
  fgd_reflection *r = NULL;
  char *err = NULL;

  Google__Protobuf__FileDescriptorProto *missing[] = {&a.f, &b.f};
  uint8_t *set = pack_set(missing, 2, &len);
  cr_assert_eq(fgd_reflection_create_from(set, len, &r, &err), FG_EDATA);
  cr_assert_null(r);
  cr_assert_not_null(err);
  cr_expect(strstr(err, "missing.proto") != NULL, "%s", err);
  free(err);
  err = NULL;
  free(set);

  Google__Protobuf__FileDescriptorProto *twice[] = {&b.f, &b.f};
  set = pack_set(twice, 2, &len);
  cr_assert_eq(fgd_reflection_create_from(set, len, &r, &err), FG_EDATA);
  cr_expect(strstr(err, "b.proto") != NULL, "%s", err);
  free(err);
  err = NULL;
  free(set);

  static const unsigned char garbage[] = {0x0a, 0x7f, 0x01};
  cr_assert_eq(fgd_reflection_create_from(garbage, sizeof garbage, &r, &err), FG_EDATA);
  cr_assert_not_null(err);
  free(err);
  /* err NULL drops the message. */
  cr_assert_eq(fgd_reflection_create_from(garbage, sizeof garbage, &r, NULL), FG_EDATA);

  /* An empty set is valid and knows nothing. */
  cr_assert_eq(fgd_reflection_create_from("", 0, &r, NULL), 0);
  refl_resp *resp = ask_symbol(r, "t.A");
  assert_error(resp, GRPC_STATUS_NOT_FOUND);
  free_resp(resp);
  fgd_reflection_free(r);
}

/* ---- health ----------------------------------------------------------------- */

static grpc_byte_buffer *health_req(const char *service) {
  Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  q.service = (char *)service;
  return fg_rpc_pack(&q.base);
}

static int status_of(grpc_byte_buffer *bb) {
  Grpc__Health__V1__HealthCheckResponse *resp =
      (Grpc__Health__V1__HealthCheckResponse *)fg_rpc_unpack(
          &grpc__health__v1__health_check_response__descriptor, bb);
  cr_assert_not_null(resp);
  int s = resp->status;
  grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
  grpc_byte_buffer_destroy(bb);
  return s;
}

/* Check(service): the status, or -code when the call fails. */
static int check(fgd_health *h, const char *service) {
  grpc_byte_buffer *in = health_req(service);
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  char *msg = (char *)"untouched";
  grpc_byte_buffer *out = fgd_health_check(h, in, &code, &msg);
  grpc_byte_buffer_destroy(in);
  if (code == GRPC_STATUS_OK) {
    cr_assert_null(msg);
    cr_assert_not_null(out);
    return status_of(out);
  }
  cr_assert_null(out);
  cr_assert_not_null(msg);
  cr_assert_neq(msg[0], '\0');
  free(msg);
  return -(int)code;
}

typedef struct {
  int calls;
  char last[64];
} changes;

static void on_change(void *ctx, const char *service) {
  changes *c = ctx;
  c->calls++;
  snprintf(c->last, sizeof c->last, "%s", service);
}

Test(health, check_semantics) {
  fgd_health *h = fgd_health_create();
  cr_assert_eq(fgd_health_get(h, ""), FGD_HEALTH_SERVICE_UNKNOWN);
  cr_assert_eq(check(h, ""), -GRPC_STATUS_NOT_FOUND, "unknown before the server sets it");

  fgd_health_set(h, "", FGD_HEALTH_SERVING);
  fgd_health_set(h, FG_RPC_SERVICE, FGD_HEALTH_SERVING);
  cr_assert_eq(check(h, ""), FGD_HEALTH_SERVING);
  cr_assert_eq(check(h, "fulgur.v1.JobService"), FGD_HEALTH_SERVING);
  cr_assert_eq(check(h, "fulgur.v1.Nope"), -GRPC_STATUS_NOT_FOUND);
  cr_assert_eq(fgd_health_get(h, NULL), FGD_HEALTH_SERVING, "NULL means the server");

  /* Shutdown starts. */
  fgd_health_set(h, "", FGD_HEALTH_NOT_SERVING);
  fgd_health_set(h, FG_RPC_SERVICE, FGD_HEALTH_NOT_SERVING);
  cr_assert_eq(check(h, ""), FGD_HEALTH_NOT_SERVING);
  cr_assert_eq(check(h, "fulgur.v1.JobService"), FGD_HEALTH_NOT_SERVING);
  fgd_health_set(h, "x", FGD_HEALTH_UNKNOWN);
  cr_assert_eq(check(h, "x"), FGD_HEALTH_UNKNOWN, "UNKNOWN is a status, not NOT_FOUND");
  fgd_health_free(h);
  fgd_health_free(NULL);
}

Test(health, malformed_check) {
  fgd_health *h = fgd_health_create();
  fgd_health_set(h, "", FGD_HEALTH_SERVING);
  static const unsigned char truncated[] = {0x0a, 0xff};
  grpc_byte_buffer *in = raw_bb(truncated, sizeof truncated);
  grpc_status_code code = GRPC_STATUS_OK;
  char *msg = NULL;
  cr_assert_null(fgd_health_check(h, in, &code, &msg));
  cr_assert_eq(code, GRPC_STATUS_INVALID_ARGUMENT);
  cr_assert_not_null(msg);
  free(msg);
  msg = NULL;
  cr_assert_null(fgd_health_check(h, NULL, &code, &msg));
  cr_assert_eq(code, GRPC_STATUS_INVALID_ARGUMENT);
  free(msg);
  cr_assert_null(fgd_health_watch_service(in));
  cr_assert_null(fgd_health_watch_service(NULL));
  grpc_byte_buffer_destroy(in);
  fgd_health_free(h);
}

Test(health, watch) {
  fgd_health *h = fgd_health_create();
  grpc_byte_buffer *in = health_req("fulgur.v1.JobService");
  char *service = fgd_health_watch_service(in);
  grpc_byte_buffer_destroy(in);
  cr_assert_str_eq(service, "fulgur.v1.JobService");
  in = health_req("");
  char *server = fgd_health_watch_service(in);
  grpc_byte_buffer_destroy(in);
  cr_assert_str_eq(server, "");

  /* Unknown: Watch says SERVICE_UNKNOWN where Check fails. */
  cr_assert_eq(status_of(fgd_health_watch_response(h, service)), FGD_HEALTH_SERVICE_UNKNOWN);
  fgd_health_set(h, service, FGD_HEALTH_SERVING);
  cr_assert_eq(status_of(fgd_health_watch_response(h, service)), FGD_HEALTH_SERVING);
  fgd_health_set(h, service, FGD_HEALTH_NOT_SERVING);
  cr_assert_eq(status_of(fgd_health_watch_response(h, service)), FGD_HEALTH_NOT_SERVING);
  cr_assert_eq(status_of(fgd_health_watch_response(h, server)), FGD_HEALTH_SERVICE_UNKNOWN);
  free(service);
  free(server);
  fgd_health_free(h);
}

Test(health, change_notifications) {
  fgd_health *h = fgd_health_create();
  changes c = {0};
  fgd_health_on_change(h, on_change, &c);
  fgd_health_set(h, "", FGD_HEALTH_SERVING);
  cr_assert_eq(c.calls, 1, "a first status is a change");
  cr_assert_str_eq(c.last, "");
  fgd_health_set(h, "", FGD_HEALTH_SERVING);
  cr_assert_eq(c.calls, 1, "the same status again is not");
  fgd_health_set(h, "fulgur.v1.JobService", FGD_HEALTH_SERVING);
  cr_assert_eq(c.calls, 2);
  cr_assert_str_eq(c.last, "fulgur.v1.JobService");
  fgd_health_set(h, "", FGD_HEALTH_NOT_SERVING);
  cr_assert_eq(c.calls, 3);
  cr_assert_str_eq(c.last, "");
  /* Many services: the table grows without losing any. */
  char name[32];
  for (int i = 0; i < 50; i++) {
    snprintf(name, sizeof name, "svc%d", i);
    fgd_health_set(h, name, i % 2 ? FGD_HEALTH_SERVING : FGD_HEALTH_NOT_SERVING);
  }
  cr_assert_eq(c.calls, 53);
  for (int i = 0; i < 50; i++) {
    snprintf(name, sizeof name, "svc%d", i);
    cr_assert_eq(fgd_health_get(h, name), i % 2 ? FGD_HEALTH_SERVING : FGD_HEALTH_NOT_SERVING);
  }
  fgd_health_on_change(h, NULL, NULL);
  fgd_health_set(h, "", FGD_HEALTH_SERVING);
  cr_assert_eq(c.calls, 53, "removed callbacks do not run");
  cr_assert_eq(fgd_health_get(h, "fulgur.v1.JobService"), FGD_HEALTH_SERVING);
  fgd_health_free(h);
}

/* The core's Watch streams react to a change by setting further statuses
 * or reading the table from inside the callback. */
static void cascade(void *ctx, const char *service) {
  fgd_health *h = ctx;
  if (strcmp(service, "") == 0)
    for (int i = 0; i < 20; i++) {
      char name[16];
      snprintf(name, sizeof name, "c%d", i);
      fgd_health_set(h, name, fgd_health_get(h, ""));
    }
}

Test(health, callback_may_set) {
  fgd_health *h = fgd_health_create();
  fgd_health_on_change(h, cascade, h);
  fgd_health_set(h, "", FGD_HEALTH_SERVING);
  cr_assert_eq(fgd_health_get(h, "c19"), FGD_HEALTH_SERVING);
  fgd_health_set(h, "", FGD_HEALTH_NOT_SERVING);
  cr_assert_eq(fgd_health_get(h, "c0"), FGD_HEALTH_NOT_SERVING);
  fgd_health_free(h);
}
