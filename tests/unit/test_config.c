/* The config system against every worked example of CONFIG.md, plus the
 * error cases: where (file:line:col), what (key path) and why. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fulgur/config.h"
#include "fulgur/error.h"

static fg_node *Y(const char *text) {
  fg_node *n = NULL;
  char *err = NULL;
  int rc = fg_node_parse(text, strlen(text), "t.yaml", &n, &err);
  cr_assert_eq(rc, 0, "parse %s: %s", text, err);
  return n;
}

static char *show(const fg_node *n) {
  char *s = NULL;
  cr_assert_eq(fg_node_emit(n, &s, NULL), 0);
  return s;
}

static void assert_yaml(const fg_node *got, const char *want_yaml) {
  fg_node *want = Y(want_yaml);
  char *g = show(got), *w = show(want);
  cr_assert(fg_node_equal(got, want), "got:\n%s\nwant:\n%s", g, w);
  free(g);
  free(w);
  fg_node_free(want);
}

/* source + override -> result, as CONFIG.md writes the examples. */
static void update_case(const char *src, const char *ov, const char *want) {
  fg_node *s = Y(src), *o = Y(ov);
  char *err = NULL;
  cr_assert_eq(fg_config_deep_update(&s, o, &err), 0, "%s + %s: %s", src, ov, err);
  assert_yaml(s, want);
  fg_node_free(s);
  fg_node_free(o);
}

/* ---- scalars ----------------------------------------------------------------- */

Test(scalars, pyyaml_rules_with_lightning_template_floats) {
  fg_node *n = Y("{a: 1e-3, b: 5E4, c: .5, d: 1.0e-3, e: 3, f: 0x1F, g: 0o7, h: 017, i: 1_000,\n"
                 " j: yes, k: Off, l: ~, m: null, n: 2024-01-02, o: '3', p: .inf, q: -.inf,\n"
                 " r: .nan, s: 1:30, t: +12, u: 1e3x, v: '', w: \"true\", x: 0b101}");
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "a")), FG_NODE_FLOAT);
  cr_assert_float_eq(fg_node_float(fg_node_get(n, "a")), 1e-3, 1e-15);
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "b")), FG_NODE_FLOAT);
  cr_assert_float_eq(fg_node_float(fg_node_get(n, "b")), 5e4, 1e-9);
  cr_assert_float_eq(fg_node_float(fg_node_get(n, "c")), 0.5, 1e-15);
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "d")), FG_NODE_FLOAT);
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "e")), FG_NODE_INT);
  cr_assert_eq(fg_node_int(fg_node_get(n, "f")), 31);
  cr_assert_str_eq(fg_node_str(fg_node_get(n, "g")), "0o7"); /* YAML 1.1: not octal */
  cr_assert_eq(fg_node_int(fg_node_get(n, "h")), 15);
  cr_assert_eq(fg_node_int(fg_node_get(n, "i")), 1000);
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "j")), FG_NODE_BOOL);
  cr_assert(fg_node_bool(fg_node_get(n, "j")));
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "k")), FG_NODE_BOOL);
  cr_assert(!fg_node_bool(fg_node_get(n, "k")));
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "l")), FG_NODE_NULL);
  cr_assert_eq(fg_node_kind_of(fg_node_get(n, "m")), FG_NODE_NULL);
  cr_assert_str_eq(fg_node_str(fg_node_get(n, "n")), "2024-01-02"); /* dates stay strings */
  cr_assert_str_eq(fg_node_str(fg_node_get(n, "o")), "3");
  cr_assert(fg_node_float(fg_node_get(n, "p")) > 1e308);
  cr_assert(fg_node_float(fg_node_get(n, "q")) < -1e308);
  cr_assert(fg_node_float(fg_node_get(n, "r")) != fg_node_float(fg_node_get(n, "r")));
  cr_assert_eq(fg_node_int(fg_node_get(n, "s")), 90); /* base 60 */
  cr_assert_eq(fg_node_int(fg_node_get(n, "t")), 12);
  cr_assert_str_eq(fg_node_str(fg_node_get(n, "u")), "1e3x");
  cr_assert_str_eq(fg_node_str(fg_node_get(n, "v")), "");
  cr_assert_str_eq(fg_node_str(fg_node_get(n, "w")), "true");
  cr_assert_eq(fg_node_int(fg_node_get(n, "x")), 5);
  fg_node_free(n);
}

Test(scalars, marks_are_one_based) {
  fg_node *n = Y("a:\n  b: [1, 2]\n  c: x\n");
  fg_mark m = fg_node_mark(fg_node_path(n, "a.b.1"));
  cr_assert_str_eq(m.file, "t.yaml");
  cr_assert_eq(m.line, 2);
  cr_assert_eq(m.col, 10);
  m = fg_node_mark(fg_node_path(n, "a.c"));
  cr_assert_eq(m.line, 3);
  cr_assert_eq(m.col, 6);
  fg_node_free(n);
}

Test(scalars, anchors_aliases_and_merge_keys) {
  fg_node *n = Y("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\nlist: [*b]\n");
  assert_yaml(fg_node_get(n, "use"), "{x: 1, y: 3}");
  assert_yaml(fg_node_get(n, "list"), "[{x: 1, y: 2}]");
  fg_node_free(n);
}

Test(scalars, syntax_errors_and_duplicates_have_marks) {
  fg_node *n = NULL;
  char *err = NULL;
  const char *bad = "a: 1\nb: [1, 2\n";
  cr_assert_eq(fg_node_parse(bad, strlen(bad), "bad.yaml", &n, &err), FG_ECONFIG);
  cr_assert(strncmp(err, "bad.yaml:", 9) == 0, "%s", err);
  cr_assert(strstr(err, "invalid YAML"), "%s", err);
  free(err);
  err = NULL;
  const char *dup = "a: 1\nb: 2\na: 3\n";
  cr_assert_eq(fg_node_parse(dup, strlen(dup), "dup.yaml", &n, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "dup.yaml:3:1: duplicate key 'a' (first written at line 1)");
  free(err);
  err = NULL;
  const char *big = "a: 99999999999999999999\n";
  cr_assert_eq(fg_node_parse(big, strlen(big), "big.yaml", &n, &err), FG_ECONFIG);
  cr_assert(strstr(err, "big.yaml:1:4: integer"), "%s", err);
  free(err);
}

Test(emit, round_trips_types_that_need_quotes) {
  const char *src =
      "a: 'true'\nb: '1e-3'\nc: 'null'\nd: 1.0e-3\ne: 100000.0\nf: [1, '2', x: y]\n"
      "g: {}\nh: []\ni: \"multi\\nline\"\nj: '$split: x'\nk: '#not a comment'\nl: 1.0\n"
      "m: -0.5\nn: 'yes'\no: ''\np: 2024-01-02\nq: 1e+300\n";
  fg_node *n = Y(src);
  char *out = show(n);
  fg_node *back = NULL;
  char *err = NULL;
  cr_assert_eq(fg_node_parse(out, strlen(out), "out.yaml", &back, &err), 0, "%s\n%s", err, out);
  cr_assert(fg_node_equal(n, back), "emitted:\n%s", out);
  cr_assert(strstr(out, "d: 0.001\n"), "%s", out);
  free(out);
  fg_node_free(n);
  fg_node_free(back);
}

/* ---- deep update ----------------------------------------------------------------- */

Test(deep_update, mappings) {
  update_case("{a: 1, b: {c: 2, d: 3}}", "{b: {c: 5, e: 6}, f: 7}", "{a: 1, b: {c: 5, d: 3, e: 6}, f: 7}");
  update_case("{a: {b: 1}}", "{a: 3}", "{a: 3}");
  update_case("{a: 1}", "[1, 2]", "[1, 2]");
}

Test(deep_update, delete_in_mappings) {
  update_case("{a: 1, b: 2, c: 3}", "{__delete__: [a, b]}", "{c: 3}");
  update_case("{a: 1}", "{__delete__: true, z: 9}", "{z: 9}");
  update_case("{a: 1, b: 2}", "{__delete__: b}", "{a: 1}");
}

Test(deep_update, list_keywords) {
  update_case("[a, b, c]", "{__delete__: [0, -1]}", "[b]");
  update_case("[a, b, c]", "{__delete__: true}", "[]");
  update_case("[a, b, c]", "{__delete__: 1}", "[a, c]");
  update_case("[a, b, c]", "{change_item: [[-1, Z], [0, Y]]}", "[Y, b, Z]");
  update_case("[{x: 1, y: 2}]", "{change_item: [[0, {y: 5}]]}", "[{x: 1, y: 5}]");
  update_case("[a, b]", "{pre_item: [P, Q]}", "[P, Q, a, b]");
  update_case("[a, b]", "{pre_item: P}", "[P, a, b]");
  update_case("[a, b]", "{post_item: [P, Q]}", "[a, b, P, Q]");
  update_case("[a, b]", "{post_item: Q}", "[a, b, Q]");
}

Test(deep_update, insert_item_examples) {
  update_case("[1, 2, 3, 4]", "{__delete__: [1, 2], insert_item: [[0, A], [3, B], [1, [C, D], true]]}",
              "[A, 1, C, D, B, 4]");
  update_case("[1, 2, 3, 4]", "{insert_item: [[-5, A], [4, B], [5, C]]}", "[A, 1, 2, 3, 4, B, C]");
  update_case("[a, b, c]", "{insert_item: [[-1, B], [1, [1, 2, 3], true]]}", "[a, 1, 2, 3, b, B, c]");
  /* Without true a list is one item. */
  update_case("[a]", "{insert_item: [[0, [x, y]]]}", "[[x, y], a]");
}

Test(deep_update, mapping_without_keywords_replaces_a_list) {
  update_case("[a, b]", "{x: 1}", "{x: 1}");
}

/* As lightning_template's deep_update: what merges onto nothing is kept as
 * written, so its keywords wait for a merge that has something to apply
 * them to. */
Test(deep_update, keywords_onto_nothing_wait) {
  update_case("{a: 1}", "{b: {__delete__: x, y: 1}, c: {post_item: 3}}",
              "{a: 1, b: {__delete__: x, y: 1}, c: {post_item: 3}}");
  update_case("{a: null, s: 5}", "{a: {__delete__: x, k: 1}, s: {__delete__: true, v: 2}}",
              "{a: {__delete__: x, k: 1}, s: {__delete__: true, v: 2}}");
  /* ... and apply when a later merge meets their target. */
  update_case("{b: {x: 1, z: 2}, c: [1, 2]}", "{b: {__delete__: x, y: 1}, c: {post_item: 3}}",
              "{b: {z: 2, y: 1}, c: [1, 2, 3]}");
  /* true: the override replaces the source as written. */
  update_case("{h: {d: 3, e: {p: 1}}}", "{h: {__delete__: true, e: {__delete__: p, q: 2}}}",
              "{h: {e: {__delete__: p, q: 2}}}");
  update_case("{a: 1}", "{__delete__: false, b: 2}", "{a: 1, b: 2}");
  /* Two updates waiting for the same list merge as Python merges them: key
   * names delete, indices cannot name a key, an index alone replaces. */
  update_case("{l: {__delete__: [0], pre_item: a}}", "{l: {__delete__: [1], post_item: b}}",
              "{l: {__delete__: [0], pre_item: a, post_item: b}}");
  update_case("{l: {__delete__: [0], pre_item: a}}", "{l: {__delete__: 2}}",
              "{l: {__delete__: 2, pre_item: a}}");
}

Test(deep_update, bad_keywords_are_errors_and_keep_the_source) {
  fg_node *s = Y("{l: [a, b, c]}"), *o = Y("{l: {__delete__: [5]}}");
  char *err = NULL;
  cr_assert_eq(fg_config_deep_update(&s, o, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "t.yaml:1:19: l.__delete__: __delete__ index 5 is out of range for a list of 3 items");
  assert_yaml(s, "{l: [a, b, c]}");
  free(err);
  fg_node_free(o);
  err = NULL;
  o = Y("{l: {change_item: [[0, x]], pre_itme: [y]}}");
  cr_assert_eq(fg_config_deep_update(&s, o, &err), FG_ECONFIG);
  cr_assert(strstr(err, "l.pre_itme: unknown list keyword 'pre_itme'"), "%s", err);
  assert_yaml(s, "{l: [a, b, c]}");
  free(err);
  fg_node_free(o);
  fg_node_free(s);
}

/* ---- __base__ ---------------------------------------------------------------------- */

static char dir[64];

static void write_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

static fg_node *load(const char *name, char **err) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  fg_node *n = NULL;
  int rc = fg_config_load_file(path, &n, err);
  return rc == 0 ? n : NULL;
}

static void make_dir(void) {
  strcpy(dir, "/tmp/fgcfgXXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  char sub[128];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  mkdir(sub, 0700);
}

static void remove_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(bases, .init = make_dir, .fini = remove_dir);

Test(bases, config_md_example) {
  write_file("base.yaml", "trainer: {max_epochs: 10, callbacks: [{class_path: A}]}\n");
  write_file("other.yaml", "trainer:\n  limit: {a: 1, b: 2}\n");
  write_file("run.yaml",
             "__base__: base.yaml\ntrainer:\n  max_epochs: 3\n  limit: {__base__: [[other.yaml, trainer.limit]]}\n");
  char *err = NULL;
  fg_node *n = load("run.yaml", &err);
  cr_assert_not_null(n, "%s", err);
  assert_yaml(n, "trainer: {max_epochs: 3, callbacks: [{class_path: A}], limit: {a: 1, b: 2}}");
  fg_node_free(n);
}

Test(bases, lists_relative_paths_and_order) {
  write_file("sub/a.yaml", "x: 1\ny: [1, 2]\n");
  write_file("sub/b.yaml", "__base__: a.yaml\nx: 2\nz: 3\n"); /* relative to sub/ */
  write_file("run.yaml", "__base__: [sub/b.yaml, [sub/a.yaml, y]]\n");
  /* The second base is a list ([1, 2]) merged onto a mapping: it replaces. */
  char *err = NULL;
  fg_node *n = load("run.yaml", &err);
  cr_assert_null(n);
  cr_assert(strstr(err, "run.yaml:1:11: __base__: the bases of a mapping must be mappings, got a list"), "%s", err);
  free(err);
  write_file("run.yaml", "__base__: [sub/b.yaml]\ny: {post_item: 3}\n");
  err = NULL;
  n = load("run.yaml", &err);
  cr_assert_not_null(n, "%s", err);
  assert_yaml(n, "{x: 2, y: [1, 2, 3], z: 3}");
  fg_node_free(n);
}

Test(bases, import_is_dropped_at_every_level_after_its_anchors_are_used) {
  write_file("a.yaml", "__import__: {s: &s {h: 1}}\nm: {__import__: 1, size: *s}\n");
  write_file("run.yaml", "__base__: a.yaml\n__import__:\n  o: &o {lr: 0.1}\n"
                         "opt: {<<: *o, m: 0.9}\nx: {__base__: [[a.yaml, m]], __import__: [1]}\n");
  char *err = NULL;
  fg_node *n = load("run.yaml", &err);
  cr_assert_not_null(n, "%s", err);
  assert_yaml(n, "{m: {size: {h: 1}}, opt: {lr: 0.1, m: 0.9}, x: {size: {h: 1}}}");
  fg_node_free(n);
}

Test(bases, a_list_base_takes_list_keywords_and_first_base_deletes_nothing) {
  write_file("a.yaml", "t: {cb: [A, B], n: 1}\n");
  write_file("first.yaml", "__delete__: t\nd: 1\n");
  write_file("run.yaml", "cb: {__base__: [[a.yaml, t.cb]], post_item: C}\n"
                         "all: {__base__: [first.yaml, a.yaml]}\n"
                         "second: {__base__: [a.yaml, first.yaml]}\n");
  char *err = NULL;
  fg_node *n = load("run.yaml", &err);
  cr_assert_not_null(n, "%s", err);
  assert_yaml(n, "{cb: [A, B, C], all: {d: 1, t: {cb: [A, B], n: 1}}, second: {d: 1}}");
  fg_node_free(n);
  write_file("run.yaml", "cb:\n  __base__: [[a.yaml, t.cb]]\n  x: 1\n");
  cr_assert_null(load("run.yaml", &err));
  cr_assert(strstr(err, "run.yaml:2:13: cb.__base__: the bases of a mapping must be mappings, got a "
                        "list (a list takes only the list keywords"), "%s", err);
  free(err);
}

Test(bases, cycles_name_the_chain) {
  write_file("a.yaml", "__base__: b.yaml\nx: 1\n");
  write_file("b.yaml", "__base__: a.yaml\ny: 1\n");
  char *err = NULL;
  cr_assert_null(load("a.yaml", &err));
  cr_assert(strstr(err, "__base__ cycle: "), "%s", err);
  cr_assert(strstr(err, "a.yaml -> "), "%s", err);
  cr_assert(strstr(err, "b.yaml -> "), "%s", err);
  cr_assert(strstr(err, "b.yaml:1:11: __base__: "), "%s", err);
  free(err);
}

Test(bases, missing_base_and_missing_key_path) {
  write_file("run.yaml", "model:\n  __base__: nope.yaml\n");
  char *err = NULL;
  cr_assert_null(load("run.yaml", &err));
  cr_assert(strstr(err, "run.yaml:2:13: model.__base__: cannot read base config"), "%s", err);
  cr_assert(strstr(err, "nope.yaml"), "%s", err);
  free(err);
  write_file("o.yaml", "a: {b: 1}\n");
  write_file("run.yaml", "__base__: [[o.yaml, a.c]]\n");
  err = NULL;
  cr_assert_null(load("run.yaml", &err));
  cr_assert(strstr(err, "'o.yaml' has no key path 'a.c'"), "%s", err);
  free(err);
}

Test(bases, several_config_files_then_overrides) {
  write_file("one.yaml", "trainer: {max_epochs: 5, callbacks: [a, b]}\n");
  write_file("two.yaml", "trainer: {max_epochs: 6}\nmodel: {x: 1}\n");
  char p1[256], p2[256];
  snprintf(p1, sizeof p1, "%s/one.yaml", dir);
  snprintf(p2, sizeof p2, "%s/two.yaml", dir);
  const char *files[] = {p1, p2};
  const char *ov[] = {"--trainer.max_epochs=7", "--model.y", "[1, 2]", "--trainer.callbacks.1",
                      "{k: v}", "--model.z={a: 1e-3}", "--new.deep.key=true"};
  fg_node *n = NULL;
  char *err = NULL;
  cr_assert_eq(fg_config_load(files, 2, ov, 7, &n, &err), 0, "%s", err);
  assert_yaml(n, "{trainer: {max_epochs: 7, callbacks: [a, {k: v}]}, model: {x: 1, y: [1, 2], "
                 "z: {a: 0.001}}, new: {deep: {key: true}}}");
  fg_node_free(n);
}

/* ---- overrides --------------------------------------------------------------------- */

Test(overrides, errors_name_the_argument) {
  fg_node *n = Y("{a: [1, 2], s: text}");
  char *err = NULL;
  cr_assert_eq(fg_config_apply_override(&n, "--a.5=1", NULL, &err), FG_ECONFIG);
  cr_assert(strstr(err, "override '--a.5=1': index 5 is out of range for 'a' (2 items)"), "%s", err);
  free(err);
  err = NULL;
  cr_assert_eq(fg_config_apply_override(&n, "--s.x=1", NULL, &err), FG_ECONFIG);
  cr_assert(strstr(err, "cannot set a key inside a string"), "%s", err);
  free(err);
  err = NULL;
  cr_assert_eq(fg_config_apply_override(&n, "a=1", NULL, &err), FG_ECONFIG);
  free(err);
  err = NULL;
  cr_assert_eq(fg_config_apply_override(&n, "--a.0=[1", NULL, &err), FG_ECONFIG);
  cr_assert(strstr(err, "<override --a.0=[1>:"), "%s", err);
  free(err);
  assert_yaml(n, "{a: [1, 2], s: text}"); /* nothing lost */
  cr_assert_eq(fg_config_apply_override(&n, "--a.-1", "9", NULL), 0);
  assert_yaml(n, "{a: [1, 9], s: text}");
  fg_node_free(n);
}

Test(overrides, a_new_class_path_replaces_the_object) {
  fg_node *n = Y("{d: {class_path: A, init_args: {x: 1}}, e: {class_path: A, init_args: {x: 1}}}");
  cr_assert_eq(fg_config_apply_override(&n, "--d={class_path: B, init_args: {y: 2}}", NULL, NULL), 0);
  cr_assert_eq(fg_config_apply_override(&n, "--e={class_path: A, init_args: {y: 2}}", NULL, NULL), 0);
  assert_yaml(n, "{d: {class_path: B, init_args: {y: 2}}, e: {class_path: A, init_args: {x: 1, y: 2}}}");
  fg_node_free(n);
}

/* ---- split configs ---------------------------------------------------------------- */

static fg_node *expand(const char *yaml) {
  fg_node *v = Y(yaml), *out = NULL;
  char *err = NULL;
  cr_assert_eq(fg_config_expand_split(v, "data.init_args.dataset_cfg", &out, &err), 0, "%s", err);
  fg_node_free(v);
  return out;
}

Test(split, config_md_example) {
  fg_node *e = expand("fit: {class_path: D, init_args: {root: data, file: train.csv}}\n"
                      "val: [{}, {init_args: {file: extra.csv}}]\n");
  assert_yaml(e, "fit: {class_path: D, init_args: {root: data, file: train.csv}}\n"
                 "val: [{class_path: D, init_args: {root: data, file: train.csv}},\n"
                 "      {class_path: D, init_args: {root: data, file: extra.csv}}]\n"
                 "test: {class_path: D, init_args: {root: data, file: train.csv}}\n"
                 "predict: {class_path: D, init_args: {root: data, file: train.csv}}\n");
  fg_node_free(e);
}

Test(split, one_config_for_every_split) {
  fg_node *e = expand("{class_path: D, init_args: {a: 1}}");
  for (int s = 0; s < FG_SPLIT_COUNT; s++)
    assert_yaml(fg_node_get(e, fg_split_names[s]), "{class_path: D, init_args: {a: 1}}");
  cr_assert_neq(fg_node_get(e, "fit"), fg_node_get(e, "val")); /* own copies */
  fg_node_free(e);
  e = expand("[1, 2]");
  assert_yaml(e, "{fit: [1, 2], val: [1, 2], test: [1, 2], predict: [1, 2]}");
  fg_node_free(e);
}

Test(split, each_split_updates_the_previous) {
  fg_node *e = expand("fit: {batch_size: 32, shuffle: true}\ntest: {batch_size: 8}\n");
  assert_yaml(e, "{fit: {batch_size: 32, shuffle: true}, val: {batch_size: 32, shuffle: true},\n"
                 " test: {batch_size: 8, shuffle: true}, predict: {batch_size: 8, shuffle: true}}");
  fg_node_free(e);
}

Test(split, split_info_fills_the_split_name) {
  fg_node *e = expand(
      "split_info:\n"
      "  split_format_to: [images, labels]\n"
      "  split_name_map: {fit: train, val: t10k, test: t10k, predict: t10k}\n"
      "fit:\n"
      "  class_path: fulgur.data.IDX\n"
      "  init_args: {images: /d/$split-images.gz, labels: /d/$split-labels.gz, other: $keep}\n"
      "val: [{}, {init_args: {images: x-$split}}]\n");
  assert_yaml(fg_node_get(e, "fit"),
              "{class_path: fulgur.data.IDX, init_args: {images: /d/train-images.gz, "
              "labels: /d/train-labels.gz, other: $keep}}");
  assert_yaml(fg_node_path(e, "val.0.init_args"),
              "{images: /d/t10k-images.gz, labels: /d/t10k-labels.gz, other: $keep}");
  assert_yaml(fg_node_path(e, "val.1.init_args"),
              "{images: x-t10k, labels: /d/t10k-labels.gz, other: $keep}");
  assert_yaml(fg_node_path(e, "predict.init_args"),
              "{images: /d/t10k-images.gz, labels: /d/t10k-labels.gz, other: $keep}");
  cr_assert_null(fg_node_get(e, "split_info"));
  fg_node_free(e);
}

Test(split, split_info_defaults_and_separator) {
  fg_node *e = expand("split_info: {split_format_to: a/name, split_attr_split_str: /}\n"
                      "fit: {class_path: D, init_args: {a: {}}}\n");
  /* Missing attribute: the default '$split' with the default name map. */
  cr_assert_str_eq(fg_node_str(fg_node_path(e, "fit.init_args.a.name")), "train");
  cr_assert_str_eq(fg_node_str(fg_node_path(e, "val.init_args.a.name")), "val");
  cr_assert_str_eq(fg_node_str(fg_node_path(e, "test.init_args.a.name")), "val");
  fg_node_free(e);
}

/* tests/fixtures/config_loader/split_cases.yaml: each config and what every
 * split becomes; interop/test_config_loader checks the same expectations
 * against lightning_template's SplitNameMixin. */
Test(split, the_cases_python_agrees_with) {
  const char *src = getenv("FG_SOURCE_DIR");
  cr_assert_not_null(src, "FG_SOURCE_DIR is not set");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/fixtures/config_loader/split_cases.yaml", src);
  fg_node *cases = NULL;
  char *err = NULL;
  cr_assert_eq(fg_node_parse_file(path, &cases, &err), 0, "%s", err);
  cr_assert_geq(fg_node_len(cases), 4);
  for (size_t i = 0; i < fg_node_len(cases); i++) {
    const fg_node *c = fg_node_at(cases, i);
    fg_node *out = NULL;
    cr_assert_eq(fg_config_expand_split(fg_node_get(c, "config"), "cfg", &out, &err), 0,
                 "%s: %s", fg_node_str(fg_node_get(c, "name")), err);
    char *g = show(out), *w = show(fg_node_get(c, "expect"));
    cr_assert(fg_node_equal(out, fg_node_get(c, "expect")), "%s\ngot:\n%s\nwant:\n%s",
              fg_node_str(fg_node_get(c, "name")), g, w);
    free(g);
    free(w);
    fg_node_free(out);
  }
  fg_node_free(cases);
}

Test(split, errors) {
  fg_node *v = Y("split_info: {split_format_to: a.b}\nfit: {class_path: D, init_args: {}}\n");
  fg_node *out = NULL;
  char *err = NULL;
  cr_assert_eq(fg_config_expand_split(v, "k", &out, &err), FG_ECONFIG);
  cr_assert(strstr(err, "k.fit.init_args.a: split_format_to 'a.b': 'k.fit.init_args.a' does not exist"), "%s", err);
  free(err);
  fg_node_free(v);
  v = Y("fit: {class_path: D}\nvall: {}\n");
  err = NULL;
  cr_assert_eq(fg_config_expand_split(v, "k", &out, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "t.yaml:2:7: k.vall: unknown key 'vall' in a split config (expected fit, "
                        "val, test, predict or split_info) (did you mean 'val'?)");
  free(err);
  fg_node_free(v);
}

/* ---- schemas ------------------------------------------------------------------------- */

static int check_positive(const fg_node *v, const char *k, char **err) {
  if (fg_node_float(v) > 0) return 0;
  return fg_config_error(err, v, k, "expected a positive number");
}

static const fg_param params[] = {
    {"lr", FG_T_FLOAT, NULL, "learning rate", check_positive, 0},
    {"betas", FG_T_SEQ, "[0.9, 0.999]", "Adam betas", NULL, FG_T_FLOAT},
    {"name", FG_T_STRING | FG_T_NULL, "null", "a name", NULL, 0},
    {"steps", FG_T_INT, "10", "steps", NULL, 0},
};

Test(schema, defaults_int_to_float_and_errors) {
  fg_node *a = Y("{lr: 1, betas: [1, 0.5]}");
  cr_assert_eq(fg_schema_check(params, 4, a, "opt.init_args", true, NULL), 0);
  cr_assert_eq(fg_node_kind_of(fg_node_get(a, "lr")), FG_NODE_FLOAT);
  cr_assert_eq(fg_node_kind_of(fg_node_path(a, "betas.0")), FG_NODE_FLOAT);
  assert_yaml(a, "{lr: 1.0, betas: [1.0, 0.5], name: null, steps: 10}");
  fg_node_free(a);

  char *err = NULL;
  a = Y("{lr: 0.1, stpes: 3}");
  cr_assert_eq(fg_schema_check(params, 4, a, "opt.init_args", false, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "t.yaml:1:18: opt.init_args.stpes: unknown key 'stpes' (did you mean 'steps'?)");
  free(err);
  fg_node_free(a);

  err = NULL;
  a = Y("{lr: 0.1, zzzzzzzz: 3}");
  cr_assert_eq(fg_schema_check(params, 4, a, "x", false, &err), FG_ECONFIG);
  cr_assert(strstr(err, "unknown key 'zzzzzzzz' (known keys: lr, betas, name, steps)"), "%s", err);
  free(err);
  fg_node_free(a);

  err = NULL;
  a = Y("{steps: 3}");
  cr_assert_eq(fg_schema_check(params, 4, a, "x", false, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "t.yaml:1:1: x.lr: missing required key 'lr': learning rate");
  free(err);
  fg_node_free(a);

  err = NULL;
  a = Y("{lr: 0.1, steps: 2.5}");
  cr_assert_eq(fg_schema_check(params, 4, a, "x", false, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "t.yaml:1:18: x.steps: expected an integer, got a float");
  free(err);
  fg_node_free(a);

  err = NULL;
  a = Y("{lr: -1}");
  cr_assert_eq(fg_schema_check(params, 4, a, "x", false, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "t.yaml:1:6: x.lr: expected a positive number");
  free(err);
  fg_node_free(a);

  err = NULL;
  a = Y("{lr: 1, name: [a]}");
  cr_assert_eq(fg_schema_check(params, 4, a, "", false, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "t.yaml:1:15: name: expected a string or null, got a list");
  free(err);
  fg_node_free(a);
}

Test(schema, closest_name) {
  const char *known[] = {"max_epochs", "max_steps", "min_epochs"};
  cr_assert_str_eq(fg_closest_name("max_epoch", known, 3), "max_epochs");
  cr_assert_str_eq(fg_closest_name("max_step", known, 3), "max_steps");
  cr_assert_null(fg_closest_name("banana", known, 3));
}
