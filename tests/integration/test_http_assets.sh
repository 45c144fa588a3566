#!/usr/bin/env bash
# The dashboard's files are embedded in fulgurd at build time
# (cmake/embed_assets.cmake writes the table daemon/http/assets.c reads):
# every file of the folder, subfolders included, byte for byte with its
# content type, and nothing else (.gitkeep, a path outside the table).
source "$(dirname "$0")/lib.sh"
A="$WORK/assets"
mkdir -p "$A/sub"
printf '<!doctype html>\n<title>t</title>\n' >"$A/index.html"
printf 'console.log("\\u00e9", 1 < 2);\n' >"$A/app.js"
printf 'body{margin:0}' >"$A/sub/style.css"
head -c 3000 /dev/urandom >"$A/logo.png"
: >"$A/empty.txt"
echo keep >"$A/.gitkeep"
run "the generator writes the table" 0 cmake -DASSET_DIR="$A" -DOUT="$WORK/table.c" \
  -P "$FG_SOURCE_DIR/cmake/embed_assets.cmake"
cat >"$WORK/main.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "assets.h"
/* Each asset: path, type, and its bytes written to DIR/path.out. */
int main(int argc, char **argv) {
  for (size_t i = 0; i < fgd_n_assets; i++) {
    const fgd_asset *a = fgd_asset_find(fgd_assets[i].path);
    if (a != &fgd_assets[i]) return 1;
    printf("%s\t%s\t%zu\n", a->path, a->content_type, a->len);
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.out", argv[1], a->path);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(a->data, 1, a->len, f) != a->len) return 1;
    fclose(f);
  }
  return fgd_asset_find("../index.html") || fgd_asset_find(".gitkeep") || fgd_asset_find("") ? 1 : 0;
}
C
run "the table compiles with assets.c" 0 cc -Wall -Werror -I"$FG_SOURCE_DIR/daemon/http" -o "$WORK/lister" \
  "$WORK/main.c" "$WORK/table.c" "$FG_SOURCE_DIR/daemon/http/assets.c"
mkdir -p "$WORK/emb/sub"
run "every asset is found by its path, nothing outside the table" 0 "$WORK/lister" "$WORK/emb"
expect "index.html is text/html" "$OUT" $'index.html\ttext/html; charset=utf-8'
expect "app.js is JavaScript" "$OUT" $'app.js\ttext/javascript; charset=utf-8'
expect "a file in a subfolder keeps its path" "$OUT" $'sub/style.css\ttext/css; charset=utf-8'
expect "a PNG is image/png" "$OUT" $'logo.png\timage/png\t3000'
expect "an empty file is served empty" "$OUT" $'empty.txt\ttext/plain; charset=utf-8\t0'
if grep -q gitkeep <<<"$OUT"; then fail ".gitkeep is not embedded" "$OUT"; else pass ".gitkeep is not embedded"; fi
same=1
for f in index.html app.js sub/style.css logo.png empty.txt; do cmp -s "$A/$f" "$WORK/emb/$f.out" || same=0; done
[[ $same == 1 ]] && pass "every embedded file is its bytes" || fail "an embedded file differs from its source"
finish
