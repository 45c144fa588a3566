/* A string-keyed hash table (open addressing, FNV-1a), for the job
 * indexes GetJob hits thousands of times a second. Keys are borrowed from
 * the values they index. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "util/xalloc.h"

typedef struct {
  const char *key; /* NULL: empty; TOMB: deleted */
  void *value;
} slot;

static const char TOMB[1];

struct fgd_map {
  slot *slots;
  size_t cap, used; /* used counts tombstones too */
};

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

fgd_map *fgd_map_create(void) {
  fgd_map *m = fg__xcalloc(1, sizeof *m);
  m->cap = 64;
  m->slots = fg__xcalloc(m->cap, sizeof *m->slots);
  return m;
}

void fgd_map_free(fgd_map *m) {
  if (!m) return;
  free(m->slots);
  free(m);
}

static slot *find(const fgd_map *m, const char *key) {
  size_t i = hash(key) & (m->cap - 1);
  for (;;) {
    slot *s = &m->slots[i];
    if (s->key == NULL) return s;
    if (s->key != TOMB && strcmp(s->key, key) == 0) return s;
    i = (i + 1) & (m->cap - 1);
  }
}

void *fgd_map_get(const fgd_map *m, const char *key) {
  slot *s = find(m, key);
  return s->key ? s->value : NULL;
}

static void grow(fgd_map *m) {
  slot *old = m->slots;
  size_t n = m->cap;
  m->cap *= 2;
  m->slots = fg__xcalloc(m->cap, sizeof *m->slots);
  m->used = 0;
  for (size_t i = 0; i < n; i++)
    if (old[i].key && old[i].key != TOMB) {
      *find(m, old[i].key) = old[i];
      m->used++;
    }
  free(old);
}

void fgd_map_put(fgd_map *m, const char *key, void *value) {
  if (2 * (m->used + 1) > m->cap) grow(m);
  slot *s = find(m, key);
  if (s->key == NULL) m->used++;
  s->key = key;
  s->value = value;
}

void fgd_map_del(fgd_map *m, const char *key) {
  slot *s = find(m, key);
  if (s->key) {
    s->key = TOMB;
    s->value = NULL;
  }
}
