/* See assets.h. */
#include "assets.h"

#include <string.h>

const fgd_asset *fgd_asset_find(const char *path) {
  for (size_t i = 0; i < fgd_n_assets; i++)
    if (strcmp(fgd_assets[i].path, path) == 0) return &fgd_assets[i];
  return NULL;
}
