#!/usr/bin/env bash
# The fulgur command is two executables (client/launcher.c): the remote
# commands run in `fulgur`, which never loads libtorch (neither linked nor
# loaded at run time, as the dynamic loader reports it), and every other
# command is the engine's, `fulgur-local`, exec'd with the same arguments:
# same output, same exit status, same pid (so signals reach it).
source "$(dirname "$0")/lib.sh"
FULGURD="$FG_BUILD_DIR/fulgurd"
SOCK="$WORK/d.sock"

LDD=$(ldd "$FULGUR" 2>&1)
if grep -qi 'torch\|libfulgur\.so' <<<"$LDD"; then fail "fulgur links no libtorch nor libfulgur" "$LDD"
else pass "fulgur links no libtorch nor libfulgur (ldd)"; fi
grep -q libtorch <<<"$(ldd "$FG_BUILD_DIR/fulgur-local")" && pass "fulgur-local, the engine, links libtorch" \
  || fail "fulgur-local links libtorch"

"$FULGURD" --state-dir "$WORK/state" --listen "unix:$SOCK" --root "$WORK" 2>"$WORK/fulgurd.log" &
DPID=$!
trap 'kill -9 $DPID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 200); do [[ -S $SOCK ]] && break; sleep 0.05; done

# What the dynamic loader loads for each remote command (LD_DEBUG=libs
# prints every library it opens).
for cmd in "jobs" "status 0000000000000000" "events 0000000000000000" "cancel 0000000000000000" \
           "pause 0000000000000000" "resume 0000000000000000" "watch 0000000000000000" "jobs --help"; do
  # shellcheck disable=SC2086
  LD_DEBUG=libs "$FULGUR" --server "unix:$SOCK" $cmd >/dev/null 2>"$WORK/ld"
  if grep -q 'calling init:' "$WORK/ld" && ! grep -qi 'torch\|libfulgur\.so' "$WORK/ld"; then
    pass "fulgur $cmd loads no libtorch"
  else
    fail "fulgur $cmd loads no libtorch" "$(grep -i 'torch\|fulgur' "$WORK/ld" | head -5)"
  fi
done
cat >"$WORK/bad.yaml" <<YAML
trainer: {max_epoch: 1}
YAML
LD_DEBUG=libs "$FULGUR" --server "unix:$SOCK" submit fit --config "$WORK/bad.yaml" >/dev/null 2>"$WORK/ld"
grep -qi torch "$WORK/ld" && fail "fulgur submit loads no libtorch" || pass "fulgur submit loads no libtorch"
run "a remote error is the daemon's, unchanged" 2 "$FULGUR" --server "unix:$SOCK" submit fit --config "$WORK/bad.yaml"
expect "naming the key" "$ERR" "missing required key 'model'"

# Local commands: the engine, with the same arguments and results.
LD_DEBUG=libs "$FULGUR" --version >/dev/null 2>"$WORK/ld"
grep -q 'libtorch' "$WORK/ld" && pass "fulgur --version runs the engine (libtorch loaded)" || fail "--version runs the engine"
run "fulgur --version" 0 "$FULGUR" --version
expect "prints the version" "$OUT" "fulgur "
run "fulgur with no command" 2 "$FULGUR"
expect "prints the usage, remote part included" "$ERR" "Remote commands"
run "an unknown command" 2 "$FULGUR" frobnicate
expect "is named" "$ERR" "fulgur: unknown command 'frobnicate'"
run "print-config without a config" 2 "$FULGUR" print-config
expect "says so" "$ERR" "fulgur: no --config given"
for a in "--help" "print-config --config $WORK/bad.yaml --no-validate"; do
  # shellcheck disable=SC2086
  "$FULGUR" $a >"$WORK/a.out" 2>"$WORK/a.err"; s1=$?
  # shellcheck disable=SC2086
  "$FG_BUILD_DIR/fulgur-local" $a >"$WORK/b.out" 2>"$WORK/b.err"; s2=$?
  if [[ $s1 -eq $s2 ]] && cmp -s "$WORK/a.out" "$WORK/b.out" && cmp -s "$WORK/a.err" "$WORK/b.err"; then
    pass "fulgur $a is fulgur-local $a (status, stdout, stderr)"
  else fail "fulgur $a differs from fulgur-local" "$s1 vs $s2"; fi
done

# exec, not fork: the pid the shell started is the engine's. The engine
# waits on a FIFO's open until the test has looked (polled: on a loaded
# machine the launcher takes a while to get to its exec).
mkfifo "$WORK/in.fifo"
"$FULGUR" print-config --config "$WORK/in.fifo" --no-validate >/dev/null 2>&1 &
EPID=$!
COMM=
for _ in $(seq 200); do
  COMM=$(cat /proc/$EPID/comm 2>/dev/null)
  [[ $COMM == fulgur-local ]] && break
  sleep 0.1
done
echo "a: 1" >"$WORK/in.fifo"
wait $EPID
[[ $COMM == fulgur-local ]] && pass "the engine runs in the pid fulgur was started as" || fail "exec, not fork" "comm: $COMM"

# A missing engine is a clear error, not a crash.
mkdir -p "$WORK/alone" && cp "$FULGUR" "$WORK/alone/fulgur"
run "no fulgur-local beside fulgur" 1 "$WORK/alone/fulgur" fit --config x.yaml
expect "names it" "$ERR" "fulgur: cannot run the engine '$WORK/alone/fulgur-local'"
run "remote commands need no engine" 0 "$WORK/alone/fulgur" --server "unix:$SOCK" jobs
finish
