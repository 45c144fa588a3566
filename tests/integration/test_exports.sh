#!/usr/bin/env bash
# libfulgur's exported symbols are its public API and nothing else: every
# defined dynamic symbol is an fg_ name declared in src/include/fulgur/*.h
# (the plugin ABI), no fg__ internal and no C++ symbol of the bridge leaks
# (src/libfulgur.map). test_plugin shows a plugin still loads against it.
source "$(dirname "$0")/lib.sh"
: "${FG_BUILD_DIR:?}"
LIB="$FG_BUILD_DIR/libfulgur.so"
HEADERS=("$FG_SOURCE_DIR"/src/include/fulgur/*.h)

run "nm reads libfulgur" 0 nm -D --defined-only "$LIB"
SYMS=$(awk 'NF >= 3 {print $3}' <<<"$OUT" | sed 's/@.*//' | sort -u)
COUNT=$(grep -c . <<<"$SYMS")
echo "# libfulgur exports $COUNT symbols"

internal=$(grep '^fg__' <<<"$SYMS")
[[ -z $internal ]] && pass "no fg__ internal is exported" || fail "fg__ internals exported" "$internal"

other=$(grep -v '^fg_[a-z0-9]' <<<"$SYMS")
[[ -z $other ]] && pass "every exported symbol is an fg_ name" || fail "non-API symbols exported" "${other:0:2000}"

# Declared in a public header: the name followed by "(" (a function) or
# standing as a word in a declaration (a variable).
undeclared=""
for s in $(grep '^fg_[a-z0-9]' <<<"$SYMS"); do
  grep -qE "\\b$s\\b" "${HEADERS[@]}" || undeclared+="$s "
done
[[ -z $undeclared ]] && pass "every exported symbol is declared in a public header" \
  || fail "exported but not in src/include/fulgur" "$undeclared"

# The API plugins use is there (examples/plugin calls these).
for s in fg_registry_add fg_module_class_init fg_tensor_from_data fg_value_dict_set fg_err_set; do
  grep -qx "$s" <<<"$SYMS" && pass "exports $s" || fail "missing export $s"
done

# A sanity floor: the pattern did not hide the API itself.
[[ $COUNT -ge 200 ]] && pass "the API is exported ($COUNT symbols)" || fail "only $COUNT symbols exported"
finish
