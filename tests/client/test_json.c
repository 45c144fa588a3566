/* The CLI's one JSON writer (rpc/json.c) and its proto3 mapping of
 * messages (rpc/json_msg.c), as both --json outputs and the HTTP API use
 * them: numbers in shortest form with integral values in full (100, not
 * 1e+02), strings always valid UTF-8 (a stray byte becomes U+FFFD), and
 * the spaced separators of the local stages' output. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fulgur/v1/jobs.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "json.h"
#include "json_msg.h"

/* A writer into memory: out_open, write through o.w, then out_close for
 * the text (caller frees). */
typedef struct {
  char *buf;
  size_t len;
  FILE *f;
  fg_json_writer w;
} out;

static void out_open(out *o) {
  o->buf = NULL;
  o->f = open_memstream(&o->buf, &o->len);
  cr_assert(o->f != NULL);
  fg__json_init(&o->w, o->f);
}

static char *out_close(out *o) {
  fclose(o->f);
  return o->buf;
}

/* What the writer printed for one object {key: v}, spaced or not. */
static char *object_of(const char *key, double v, bool spaced) {
  out o;
  out_open(&o);
  fg_json_writer *w = &o.w;
  w->spaced = spaced;
  fg__json_begin_object(w);
  fg__json_key(w, key);
  fg__json_double(w, v);
  fg__json_key(w, "b");
  fg__json_double(w, 0.1);
  fg__json_end_object(w);
  return out_close(&o);
}

Test(json, integral_doubles_in_full) {
  char *s = object_of("a", 100, true);
  cr_assert_str_eq(s, "{\"a\": 100, \"b\": 0.1}");
  free(s);
  s = object_of("a", 1e15, false);
  cr_assert_str_eq(s, "{\"a\":1000000000000000,\"b\":0.1}");
  free(s);
  s = object_of("a", 1.5e-7, false);
  cr_assert_str_eq(s, "{\"a\":1.5e-07,\"b\":0.1}");
  free(s);
}

Test(json, invalid_utf8_becomes_replacement_character) {
  /* A lone continuation byte, a truncated sequence, an overlong '/', a
   * surrogate; valid multi-byte text passes through unchanged. */
  char *s = object_of("x\x80y\xc3" "z\xc0\xaf\xed\xa0\x80 \xc3\xa9", 1, true);
  cr_assert_str_eq(s, "{\"x\\ufffdy\\ufffdz\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd \xc3\xa9\": 1, \"b\": 0.1}");
  free(s);
  s = object_of("q\"\\\n\x01", 2, true);
  cr_assert_str_eq(s, "{\"q\\\"\\\\\\n\\u0001\": 2, \"b\": 0.1}");
  free(s);
}

/* The HTTP API's proto3 mapping: int64 and uint64 as strings, the rest as
 * numbers; the CLI's default keeps them numbers. */
Test(json, int64_strings) {
  for (int strings = 0; strings < 2; strings++) {
    out o;
    out_open(&o);
    o.w.int64_strings = strings;
    fg_json_writer *w = &o.w;
    fg__json_begin_array(w);
    fg__json_int64(w, -9007199254740993LL);
    fg__json_uint64(w, 18446744073709551615ULL);
    fg__json_int(w, 3);
    fg__json_end_array(w);
    char *buf = out_close(&o);
    cr_assert_str_eq(buf, strings ? "[\"-9007199254740993\",\"18446744073709551615\",3]"
                                  : "[-9007199254740993,18446744073709551615,3]");
    free(buf);
  }
}

/* ---- fg__json_message: any message by its descriptor ----------------------
 * Each expectation is what python3-protobuf's json_format.MessageToDict
 * (including_default_value_fields=True) printed for the same message,
 * compared as JSON values (jansson's json_equal: key order aside). */

static char *message_json(const ProtobufCMessage *m) {
  out o;
  out_open(&o);
  o.w.int64_strings = true;
  fg__json_message(&o.w, m);
  return out_close(&o);
}

static void assert_same_json(const ProtobufCMessage *m, const char *python) {
  char *got = message_json(m);
  json_error_t err;
  json_t *a = json_loads(got, 0, &err), *b = json_loads(python, 0, &err);
  cr_assert(a != NULL, "not JSON: %s", got);
  cr_assert(b != NULL);
  cr_assert(json_equal(a, b), "got      %s\nexpected %s", got, python);
  json_decref(a);
  json_decref(b);
  free(got);
}

/* Scalars of every width, a map, a repeated message, enums by name; the
 * message field (progress) not set is left out. Job.memory_limit is the
 * field a hand-listed renderer missed. */
Test(json_message, job_as_python_prints_it) {
  Fulgur__V1__Job j = FULGUR__V1__JOB__INIT;
  j.id = "j1";
  j.name = "n \"q\"";
  j.stage = FULGUR__V1__STAGE__FIT;
  j.state = FULGUR__V1__JOB_STATE__FAILED;
  j.last_seq = 18446744073709551615ULL;
  j.create_time_ns = -5;
  j.exit_code = -9;
  j.attempts = 2;
  j.memory_limit = 8ULL << 30;
  Fulgur__V1__Job__MetricsEntry me = FULGUR__V1__JOB__METRICS_ENTRY__INIT, *mp = &me;
  me.key = "fit/loss";
  me.value = 0.25;
  j.n_metrics = 1;
  j.metrics = &mp;
  Fulgur__V1__AttemptFailure af = FULGUR__V1__ATTEMPT_FAILURE__INIT, *ap = &af;
  af.attempt = 1;
  af.reason = "r";
  af.exit_signal = "SIGKILL";
  af.time_ns = 7;
  j.n_failures = 1;
  j.failures = &ap;
  assert_same_json(&j.base,
                   "{\"id\":\"j1\",\"name\":\"n \\\"q\\\"\",\"stage\":\"FIT\",\"state\":\"FAILED\",\"metrics\":"
                   "{\"fit/loss\":0.25},\"createTimeNs\":\"-5\",\"lastSeq\":\"18446744073709551615\",\"exitCode\":"
                   "-9,\"attempts\":2,\"failures\":[{\"attempt\":1,\"reason\":\"r\",\"exitSignal\":\"SIGKILL\","
                   "\"timeNs\":\"7\",\"exitCode\":0}],\"memoryLimit\":\"8589934592\",\"error\":\"\","
                   "\"startTimeNs\":\"0\",\"endTimeNs\":\"0\",\"idempotencyKey\":\"\",\"runDir\":\"\","
                   "\"lastCheckpoint\":\"\",\"exitSignal\":\"\",\"maxRestarts\":0,\"parentId\":\"\","
                   "\"parentCheckpoint\":\"\"}");
}

/* A oneof prints its set member only. */
Test(json_message, event_oneof_as_python_prints_it) {
  Fulgur__V1__JobEvent e = FULGUR__V1__JOB_EVENT__INIT;
  Fulgur__V1__Scalars s = FULGUR__V1__SCALARS__INIT;
  Fulgur__V1__Scalars__ValuesEntry ve = FULGUR__V1__SCALARS__VALUES_ENTRY__INIT, *vp = &ve;
  ve.key = "a";
  ve.value = 1.5;
  s.n_values = 1;
  s.values = &vp;
  s.split = "fit";
  s.global_step = 2;
  e.seq = 3;
  e.job_id = "j1";
  e.time_ns = 4;
  e.kind_case = FULGUR__V1__JOB_EVENT__KIND_STEP;
  e.step = &s;
  assert_same_json(&e.base, "{\"seq\":\"3\",\"jobId\":\"j1\",\"timeNs\":\"4\",\"step\":{\"values\":{\"a\":1.5},"
                            "\"split\":\"fit\",\"globalStep\":\"2\",\"epoch\":\"0\",\"batchIdx\":\"0\"}}");
}

/* Field types fulgur.v1 lacks, from gRPC's reflection messages: repeated
 * bytes (base64 with padding, every tail length), repeated int32, a string
 * member of a nested oneof, and nothing for a oneof not set. */
Test(json_message, bytes_and_repeated_scalars_as_python_prints_them) {
  Grpc__Reflection__V1alpha__ServerReflectionResponse r = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__FileDescriptorResponse fd = GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
  ProtobufCBinaryData b[] = {{0, (uint8_t *)""},
                             {1, (uint8_t *)"a"},
                             {2, (uint8_t *)"ab"},
                             {3, (uint8_t *)"abc"},
                             {4, (uint8_t *)"\xff\x00\xfe\x01"}};
  fd.n_file_descriptor_proto = 5;
  fd.file_descriptor_proto = b;
  r.valid_host = "h";
  r.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
  r.file_descriptor_response = &fd;
  assert_same_json(&r.base, "{\"validHost\":\"h\",\"fileDescriptorResponse\":{\"fileDescriptorProto\":"
                            "[\"\",\"YQ==\",\"YWI=\",\"YWJj\",\"/wD+AQ==\"]}}");

  Grpc__Reflection__V1alpha__ExtensionNumberResponse en = GRPC__REFLECTION__V1ALPHA__EXTENSION_NUMBER_RESPONSE__INIT;
  int32_t nums[] = {-1, 0, 2147483647};
  en.base_type_name = "T";
  en.n_extension_number = 3;
  en.extension_number = nums;
  Grpc__Reflection__V1alpha__ServerReflectionResponse r2 = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  r2.message_response_case =
      GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
  r2.all_extension_numbers_response = &en;
  assert_same_json(&r2.base, "{\"allExtensionNumbersResponse\":{\"baseTypeName\":\"T\",\"extensionNumber\":"
                             "[-1,0,2147483647]},\"validHost\":\"\"}");

  Grpc__Reflection__V1alpha__ServerReflectionRequest q = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
  q.host = "x";
  q.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
  q.file_by_filename = "f.proto";
  Grpc__Reflection__V1alpha__ServerReflectionResponse r3 = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  r3.original_request = &q;
  assert_same_json(&r3.base, "{\"originalRequest\":{\"host\":\"x\",\"fileByFilename\":\"f.proto\"},\"validHost\":\"\"}");

  Grpc__Reflection__V1alpha__ServerReflectionResponse r4 = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  assert_same_json(&r4.base, "{\"validHost\":\"\"}");
}
