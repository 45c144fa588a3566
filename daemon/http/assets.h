/* The dashboard's static files, embedded at build time from
 * daemon/http/assets/ (cmake/embed_assets.cmake writes the table). */
#ifndef FGD_HTTP_ASSETS_H
#define FGD_HTTP_ASSETS_H

#include <stddef.h>

typedef struct {
  const char *path; /* relative to assets/: "index.html", "app.js" */
  const char *content_type;
  const unsigned char *data;
  size_t len;
} fgd_asset;

extern const fgd_asset fgd_assets[];
extern const size_t fgd_n_assets;

/* The file at path, or NULL. Only names in the table match, so no path
 * can reach outside it. */
const fgd_asset *fgd_asset_find(const char *path);

#endif
