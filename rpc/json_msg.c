/* See json_msg.h. */
#include "json_msg.h"

#include <stdlib.h>
#include <string.h>

/* proto3 JSON's lowerCamelCase of a field name: "create_time_ns" ->
 * "createTimeNs". Field names are short; a name past the buffer prints as
 * written rather than cut. */
static void json_field_key(fg_json_writer *w, const char *name) {
  char camel[128];
  size_t n = 0;
  bool up = false;
  for (const char *p = name; *p; p++) {
    if (n + 1 >= sizeof camel) {
      fg__json_key(w, name);
      return;
    }
    if (*p == '_') {
      up = true;
      continue;
    }
    camel[n++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
    up = false;
  }
  camel[n] = 0;
  fg__json_key(w, camel);
}

static void json_enum(fg_json_writer *w, const ProtobufCEnumDescriptor *d, int v) {
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
  if (ev) fg__json_string(w, ev->name);
  else fg__json_int(w, v); /* proto3 JSON: unknown enum values as numbers */
}

/* proto3 JSON writes bytes as standard base64 with padding. */
static void json_bytes(fg_json_writer *w, const ProtobufCBinaryData *b) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *s = malloc((b->len + 2) / 3 * 4 + 1);
  if (s == NULL) {
    fg__json_string(w, ""); /* the writer has no error path; keep the JSON whole */
    return;
  }
  size_t o = 0;
  for (size_t i = 0; i < b->len; i += 3) {
    uint32_t v = (uint32_t)b->data[i] << 16;
    if (i + 1 < b->len) v |= (uint32_t)b->data[i + 1] << 8;
    if (i + 2 < b->len) v |= b->data[i + 2];
    s[o++] = abc[v >> 18 & 63];
    s[o++] = abc[v >> 12 & 63];
    s[o++] = i + 1 < b->len ? abc[v >> 6 & 63] : '=';
    s[o++] = i + 2 < b->len ? abc[v & 63] : '=';
  }
  s[o] = 0;
  fg__json_string(w, s);
  free(s);
}

/* One value of field f stored at p (a single element of a repeated field). */
static void json_value(fg_json_writer *w, const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32: fg__json_int(w, *(const int32_t *)p); break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32: fg__json_uint(w, *(const uint32_t *)p); break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64: fg__json_int64(w, *(const int64_t *)p); break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: fg__json_uint64(w, *(const uint64_t *)p); break;
  case PROTOBUF_C_TYPE_FLOAT: fg__json_double(w, *(const float *)p); break;
  case PROTOBUF_C_TYPE_DOUBLE: fg__json_double(w, *(const double *)p); break;
  case PROTOBUF_C_TYPE_BOOL: fg__json_bool(w, *(const protobuf_c_boolean *)p != 0); break;
  case PROTOBUF_C_TYPE_ENUM: json_enum(w, f->descriptor, *(const int *)p); break;
  case PROTOBUF_C_TYPE_STRING: fg__json_string(w, *(char *const *)p); break;
  case PROTOBUF_C_TYPE_BYTES: json_bytes(w, p); break;
  case PROTOBUF_C_TYPE_MESSAGE: fg__json_message(w, *(ProtobufCMessage *const *)p); break;
  }
}

/* protobuf-c keeps no map flag: a map field is a repeated message of a
 * nested "<Name>Entry" type whose fields are key = 1 and value = 2, which
 * is how protoc lowers map<K, V>. */
static bool is_map(const ProtobufCFieldDescriptor *f) {
  if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return false;
  const ProtobufCMessageDescriptor *d = f->descriptor;
  size_t n = strlen(d->short_name);
  return d->n_fields == 2 && n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 && d->fields[0].id == 1
         && strcmp(d->fields[0].name, "key") == 0 && d->fields[1].id == 2
         && strcmp(d->fields[1].name, "value") == 0;
}

/* A map key is always a JSON string. */
static void json_map_key(fg_json_writer *w, const ProtobufCFieldDescriptor *k, const void *p) {
  char num[32];
  switch (k->type) {
  case PROTOBUF_C_TYPE_STRING: fg__json_key(w, *(char *const *)p ? *(char *const *)p : ""); return;
  case PROTOBUF_C_TYPE_BOOL: fg__json_key(w, *(const protobuf_c_boolean *)p ? "true" : "false"); return;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64: snprintf(num, sizeof num, "%lld", (long long)*(const int64_t *)p); break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    snprintf(num, sizeof num, "%llu", (unsigned long long)*(const uint64_t *)p);
    break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32: snprintf(num, sizeof num, "%u", (unsigned)*(const uint32_t *)p); break;
  default: snprintf(num, sizeof num, "%d", (int)*(const int32_t *)p); break;
  }
  fg__json_key(w, num);
}

static size_t type_size(const ProtobufCFieldDescriptor *f) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: return 8;
  case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
  case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
  case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
  default: return 4;
  }
}

void fg__json_message(fg_json_writer *w, const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *base = (const char *)m;
  fg__json_begin_object(w);
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const void *p = base + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      /* Only the member the oneof's case names. */
      if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
      json_field_key(w, f->name);
      json_value(w, f, p);
      continue;
    }
    /* A message field not set is left out, as proto3 JSON (and
     * python3-protobuf's MessageToDict) leave it out. */
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED
        && *(ProtobufCMessage *const *)p == NULL)
      continue;
    json_field_key(w, f->name);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
      json_value(w, f, p);
      continue;
    }
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    const char *arr = *(const char *const *)p;
    if (is_map(f)) {
      const ProtobufCMessageDescriptor *e = f->descriptor;
      fg__json_begin_object(w);
      for (size_t k = 0; k < n; k++) {
        const char *entry = ((const char *const *)arr)[k];
        json_map_key(w, &e->fields[0], entry + e->fields[0].offset);
        json_value(w, &e->fields[1], entry + e->fields[1].offset);
      }
      fg__json_end_object(w);
      continue;
    }
    fg__json_begin_array(w);
    for (size_t k = 0; k < n; k++) json_value(w, f, arr + k * type_size(f));
    fg__json_end_array(w);
  }
  fg__json_end_object(w);
}
