/* The config loader on arbitrary text: YAML parsing (anchors, aliases,
 * merge keys, tags), print-config's emitter, deep update with the list
 * keywords, a command-line override and split expansion.
 *
 * Input: an optional first line "--key.path=VALUE" (an override), then
 * the document. Properties: every failure is FG_ECONFIG with a message
 * that names the document; what parses emits to YAML that parses back to
 * an equal tree. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fuzz_util.h"
#include "util/limits.h"

static void expect_config_error(int rc, char *err) {
  FUZZ_REQUIRE(rc == FG_ECONFIG);
  FUZZ_REQUIRE(err != NULL);
  free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  size_t len = size;
  char *override = NULL;
  if (size > 2 && text[0] == '-' && text[1] == '-') {
    const char *nl = memchr(text, '\n', size);
    if (nl) {
      override = strndup(text, (size_t)(nl - text));
      len = size - (size_t)(nl + 1 - text);
      text = nl + 1;
    }
  }
  fg_node *n = NULL;
  char *err = NULL;
  int rc = fg_node_parse(text, len, "fuzz.yaml", &n, &err);
  if (rc != 0) {
    FUZZ_REQUIRE(err && strncmp(err, "fuzz.yaml:", 10) == 0);
    expect_config_error(rc, err);
    free(override);
    return 0;
  }

  /* print-config's output reads back as the same tree (when it is not
   * larger than a config may be: aliases are written out expanded). */
  char *yaml = NULL;
  if (fg_node_emit(n, &yaml, &err) == 0 && strlen(yaml) > FG_CONFIG_MAX_FILE_BYTES) {
    free(yaml);
  } else if (yaml != NULL) {
    fg_node *back = NULL;
    rc = fg_node_parse(yaml, strlen(yaml), "emitted.yaml", &back, &err);
    if (rc != 0) fprintf(stderr, "emitted:\n%s\nerror: %s\n", yaml, err);
    FUZZ_REQUIRE(rc == 0);
    if (!fg_node_equal(n, back)) fprintf(stderr, "emitted:\n%s\n", yaml);
    FUZZ_REQUIRE(fg_node_equal(n, back));
    fg_node_free(back);
    free(yaml);
  } else {
    free(err);
    err = NULL;
  }

  /* Deep update: onto itself and onto an empty mapping. */
  fg_node *self = fg_node_clone(n);
  rc = fg_config_deep_update(&self, n, &err);
  if (rc) expect_config_error(rc, err);
  err = NULL;
  fg_node *onto = fg_node_new_map();
  rc = fg_config_deep_update(&onto, n, &err);
  if (rc) expect_config_error(rc, err);
  err = NULL;

  if (override) {
    rc = fg_config_apply_override(&onto, override, NULL, &err);
    if (rc) expect_config_error(rc, err);
    err = NULL;
  }

  /* Split expansion of the document and of each of its values. */
  fg_node *out = NULL;
  rc = fg_config_expand_split(n, "fuzz", &out, &err);
  if (rc) expect_config_error(rc, err);
  else fg_node_free(out);
  err = NULL;
  for (size_t i = 0; i < fg_node_len(n); i++) {
    out = NULL;
    rc = fg_config_expand_split(fg_node_at(n, i), "fuzz.value", &out, &err);
    if (rc) expect_config_error(rc, err);
    else fg_node_free(out);
    err = NULL;
  }

  fg_node_free(onto);
  fg_node_free(self);
  fg_node_free(n);
  free(override);
  return 0;
}
