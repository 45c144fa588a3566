#!/usr/bin/env bash
# Hostile configs stop at a limit (src/util/limits.h) with an error naming
# file:line:col and exit status 2, quickly and in little memory: a 400-byte
# alias bomb, 200,000 nested brackets, and a file, a mapping, a scalar or a
# chain of __base__ files past its limit. Each runs under an address-space
# limit that a bomb expanding as it used to would hit long before it ends.
source "$(dirname "$0")/lib.sh"

# fulgur-local with libtorch loaded reserves a few hundred MB of address
# space; the bomb used to take 3.4 GB before it aborted. Under a sanitizer
# the shadow memory needs far more address space: there the limit is off.
AS_LIMIT=$((1536 * 1024 * 1024))
limited() {
  if [[ ${FG_SANITIZED:-0} == 1 ]]; then "$@"; else prlimit --as=$AS_LIMIT -- "$@"; fi
}

# The classic "billion laughs": nine levels of ten aliases, 10^9 nodes.
{
  echo 'a: &a [x,x,x,x,x,x,x,x,x,x]'
  prev=a
  for l in b c d e f g h i j; do
    echo "$l: &$l [$(printf "*$prev,%.0s" 1 2 3 4 5 6 7 8 9)*$prev]"
    prev=$l
  done
} >"$WORK/bomb.yaml"
size=$(stat -c %s "$WORK/bomb.yaml")
((size <= 400)) && pass "the bomb is $size bytes" || fail "the bomb is $size bytes"
run "alias bomb" 2 limited "$FULGUR" print-config --config "$WORK/bomb.yaml"
expect "alias bomb: the limit is named" "$ERR" "the document expands to too many nodes"
expect "alias bomb: the limit's value" "$ERR" "(the limit is 1000000 nodes)"
# The alias that crosses the limit: f (line 6) holds 10 x 111,111 nodes,
# the lines above it 123,456; its ninth alias passes 10^6.
expect "alias bomb: file:line:col" "$ERR" "$WORK/bomb.yaml:6:"
[[ $ERR != *"rror: "* ]] || fail "alias bomb: a config error, not an internal one" "$ERR"

# An alias to a long string, repeated: few nodes, much text.
{
  printf 's: &s "%s"\n' "$(head -c 500000 /dev/zero | tr '\0' x)"
  printf 'l: [%s]\n' "$(for i in $(seq 200); do printf '*s, '; done)*s"
} >"$WORK/text_bomb.yaml"
run "text bomb" 2 limited "$FULGUR" print-config --config "$WORK/text_bomb.yaml"
expect "text bomb: the limit is named" "$ERR" "$WORK/text_bomb.yaml:2:"
expect "text bomb: too much text" "$ERR" "too much text (an alias repeated too often?) (the limit is 67108864 bytes)"

# 200,000 nested brackets: stopped at the 129th level, before libyaml has
# scanned (and kept state for) the rest.
head -c 200000 /dev/zero | tr '\0' '[' >"$WORK/deep.yaml"
run "200,000 nested brackets" 2 limited "$FULGUR" print-config --config "$WORK/deep.yaml"
expect "nesting: file:line:col of the 129th level" "$ERR" "$WORK/deep.yaml:1:129: lists and mappings nested too deep (the limit is 128 levels)"

# Nesting at the limit is fine (128 levels).
{ head -c 127 /dev/zero | tr '\0' '['; printf '1'; head -c 127 /dev/zero | tr '\0' ']'; echo; } >"$WORK/deep_ok.yaml"
printf 'x: ' | cat - "$WORK/deep_ok.yaml" >"$WORK/deep_ok2.yaml"
run "127 levels under a key" 0 "$FULGUR" print-config --no-validate --config "$WORK/deep_ok2.yaml"

# A file larger than 4 MiB (a comment, so it would parse).
{ echo "x: 1"; head -c $((4 * 1024 * 1024)) /dev/zero | tr '\0' '#'; echo; } >"$WORK/big.yaml"
run "a 4 MiB file" 2 limited "$FULGUR" print-config --config "$WORK/big.yaml"
expect "file size: named with its limit" "$ERR" "$WORK/big.yaml:1:1: the file is more than 4194304 bytes (the limit)"

# 10,001 keys in one mapping.
for i in $(seq 0 10000); do echo "k$i: $i"; done >"$WORK/keys.yaml"
run "10,001 keys" 2 limited "$FULGUR" print-config --config "$WORK/keys.yaml"
expect "key count: the 10,001st key's line" "$ERR" "$WORK/keys.yaml:10001:1: too many keys in one mapping (the limit is 10000 keys)"

# A scalar over 1 MiB.
printf 'x: %s\n' "$(head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' y)" >"$WORK/long.yaml"
run "a 1 MiB scalar" 2 limited "$FULGUR" print-config --config "$WORK/long.yaml"
expect "string length: where it starts" "$ERR" "$WORK/long.yaml:1:4: a scalar too long (the limit is 1048576 bytes)"

# __base__ files naming the next one twice: 2^9 loads of the last.
echo "seed_everything: 1" >"$WORK/b9.yaml"
for i in 8 7 6 5 4 3 2 1 0; do
  printf '__base__: [b%d.yaml, b%d.yaml]\n' $((i + 1)) $((i + 1)) >"$WORK/b$i.yaml"
done
run "a doubling __base__ chain" 2 limited "$FULGUR" print-config --config "$WORK/b0.yaml"
expect "base files: the limit" "$ERR" "__base__ reads more than 256 files (the limit)"
expect "base files: where" "$ERR" ".yaml:1:"

finish
