/* Request bodies: a JSON object in the proto3 JSON mapping into a
 * protobuf-c message, driven by the message's descriptor. Parsed with
 * Debian's libjansson: its errors carry line, column and what was
 * expected, which the 400 answer passes on. Only what JobService's
 * requests hold is supported (scalars, enums, repeated strings); anything
 * else is refused by name rather than guessed at. */
#include "json_in.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

/* proto_name's lowerCamelCase JSON name ("config_yaml" -> "configYaml"). */
static void json_name(const char *proto, char *out, size_t len) {
  size_t n = 0;
  bool up = false;
  for (const char *p = proto; *p && n + 1 < len; p++) {
    if (*p == '_') {
      up = true;
      continue;
    }
    out[n++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
    up = false;
  }
  out[n] = '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key) {
  char name[128];
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    json_name(f->name, name, sizeof name);
    if (strcmp(key, name) == 0 || strcmp(key, f->name) == 0) return f;
  }
  return NULL;
}

static const char *kind_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
  }
}

/* An integer field's value: a JSON integer, or a string of one (how
 * proto3 JSON writes 64-bit values). */
static char *integer(const char *key, const json_t *v, bool is_signed, long long lo,
                     unsigned long long hi, unsigned long long *out) {
  if (json_is_integer(v)) {
    long long x = json_integer_value(v);
    if (x < lo || (x > 0 && (unsigned long long)x > hi) || (!is_signed && x < 0))
      return fg__xasprintf("field '%s': %lld is out of range", key, x);
    *out = (unsigned long long)x;
    return NULL;
  }
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end = NULL;
    errno = 0;
    if (is_signed) {
      long long x = strtoll(s, &end, 10);
      if (!s[0] || *end || errno || x < lo || (x > 0 && (unsigned long long)x > hi))
        return fg__xasprintf("field '%s': expected an integer, got \"%s\"", key, s);
      *out = (unsigned long long)x;
    } else {
      unsigned long long x = strtoull(s, &end, 10);
      if (s[0] < '0' || s[0] > '9' || *end || errno || x > hi)
        return fg__xasprintf("field '%s': expected an unsigned integer, got \"%s\"", key, s);
      *out = x;
    }
    return NULL;
  }
  return fg__xasprintf("field '%s': expected an integer, got %s", key, kind_name(v));
}

static char *set_field(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const char *key,
                       const json_t *v) {
  void *slot = (char *)msg + f->offset;
  if (json_is_null(v)) return NULL; /* proto3 JSON: null is the default */
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    if (f->type != PROTOBUF_C_TYPE_STRING)
      return fg__xasprintf("field '%s' is not supported over HTTP", key);
    if (!json_is_array(v)) return fg__xasprintf("field '%s': expected an array of strings, got %s", key, kind_name(v));
    size_t n = json_array_size(v);
    size_t *count = (size_t *)((char *)msg + f->quantifier_offset);
    char ***arr = slot;
    for (size_t i = 0; i < *count; i++) free((*arr)[i]);
    free(*arr);
    *arr = n ? fg__xcalloc(n, sizeof **arr) : NULL;
    *count = 0;
    for (size_t i = 0; i < n; i++) {
      const json_t *e = json_array_get(v, i);
      if (!json_is_string(e))
        return fg__xasprintf("field '%s'[%zu]: expected a string, got %s", key, i, kind_name(e));
      (*arr)[(*count)++] = fg__xstrndup(json_string_value(e), json_string_length(e));
    }
    return NULL;
  }
  unsigned long long u = 0;
  char *bad = NULL;
  switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
      if (!json_is_string(v)) return fg__xasprintf("field '%s': expected a string, got %s", key, kind_name(v));
      if (strlen(json_string_value(v)) != json_string_length(v))
        return fg__xasprintf("field '%s': the string holds a NUL character", key);
      char **s = slot;
      if (*s && *s != protobuf_c_empty_string && *s != (char *)f->default_value) free(*s);
      *s = fg__xstrdup(json_string_value(v));
      return NULL;
    }
    case PROTOBUF_C_TYPE_BOOL:
      if (!json_is_boolean(v)) return fg__xasprintf("field '%s': expected true or false, got %s", key, kind_name(v));
      *(protobuf_c_boolean *)slot = json_is_true(v);
      return NULL;
    case PROTOBUF_C_TYPE_ENUM: {
      const ProtobufCEnumDescriptor *e = f->descriptor;
      if (json_is_string(v)) {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(e, json_string_value(v));
        if (!ev) return fg__xasprintf("field '%s': no %s named \"%s\"", key, e->short_name, json_string_value(v));
        *(int *)slot = ev->value;
        return NULL;
      }
      if ((bad = integer(key, v, true, INT32_MIN, INT32_MAX, &u))) return bad;
      *(int *)slot = (int)(long long)u;
      return NULL;
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
      if ((bad = integer(key, v, false, 0, UINT32_MAX, &u))) return bad;
      *(uint32_t *)slot = (uint32_t)u;
      return NULL;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
      if ((bad = integer(key, v, true, INT32_MIN, INT32_MAX, &u))) return bad;
      *(int32_t *)slot = (int32_t)(long long)u;
      return NULL;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
      if ((bad = integer(key, v, false, 0, UINT64_MAX, &u))) return bad;
      *(uint64_t *)slot = u;
      return NULL;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
      if ((bad = integer(key, v, true, INT64_MIN, INT64_MAX, &u))) return bad;
      *(int64_t *)slot = (int64_t)u;
      return NULL;
    case PROTOBUF_C_TYPE_DOUBLE:
      if (!json_is_number(v)) return fg__xasprintf("field '%s': expected a number, got %s", key, kind_name(v));
      *(double *)slot = json_number_value(v);
      return NULL;
    default: return fg__xasprintf("field '%s' is not supported over HTTP", key);
  }
}

char *fgd_http_json_to_msg(const char *json, size_t len, ProtobufCMessage *msg) {
  json_error_t e;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
  if (!root)
    return fg__xasprintf("the request body is not valid JSON: line %d, column %d: %s", e.line, e.column,
                         e.text);
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  char *bad = NULL;
  if (!json_is_object(root)) {
    bad = fg__xasprintf("the request body must be a JSON object (a %s), got %s", d->short_name,
                        kind_name(root));
  } else {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
      const ProtobufCFieldDescriptor *f = find_field(d, key);
      if (!f) {
        bad = fg__xasprintf("%s has no field '%s'", d->short_name, key);
        break;
      }
      if ((bad = set_field(msg, f, key, v))) break;
    }
  }
  json_decref(root);
  return bad;
}
