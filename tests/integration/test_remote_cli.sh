#!/usr/bin/env bash
# The fulgur command's remote side against a real fulgurd: submit (with
# __base__ and overrides resolved on the client), --watch, jobs, status,
# watch --from, events, cancel, pause/resume, --json, tokens, and the exit
# statuses (0 ok, 1 job failed, 2 usage/config, 3 unreachable, 130 cancelled).
source "$(dirname "$0")/lib.sh"
FULGURD="$FG_BUILD_DIR/fulgurd"
PY=${FG_PYTHON:-/usr/bin/python3}
SOCK="$WORK/d.sock"
export FULGUR_SERVER="unix:$SOCK"

"$FULGURD" --state-dir "$WORK/state" --listen "unix:$SOCK" --root "$WORK" --max-jobs 1 \
  2>"$WORK/fulgurd.log" &
DPID=$!
trap 'kill -9 $DPID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 200); do [[ -S $SOCK ]] && break; sleep 0.05; done

cat >"$WORK/base.yaml" <<YAML
seed_everything: 7
trainer:
  max_epochs: 2
  default_root_dir: $WORK/runs
  log_every_n_steps: 2
  enable_progress_bar: false
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {in_features: 20, hidden: [16], out_features: 4}
    evaluator_cfg:
      class_path: fulgur.metrics.Accuracy
      init_args: {task: multiclass, num_classes: 4}
optimizer_config:
  optimizer:
    class_path: torch.optim.SGD
    init_args: {lr: 0.1, momentum: 0.9}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.Synthetic
        init_args: {num_samples: 256, shape: [20], num_classes: 4, seed: 1}
      val:
        init_args: {num_samples: 64, seed: 2}
    dataloader_cfg: {batch_size: 32, num_workers: 1}
YAML
# A config that inherits: __base__ must be resolved on the client.
cat >"$WORK/child.yaml" <<YAML
__base__: base.yaml
trainer:
  max_epochs: 3
YAML

# ---- submit --watch: the whole run, exit 0 ----
run "submit --watch succeeds" 0 "$FULGUR" submit fit --config "$WORK/child.yaml" --trainer.log_every_n_steps=4 \
  --name cli-one --watch
expect "it prints the final metrics" "$OUT$ERR" "val/Accuracy"
run "jobs lists it" 0 "$FULGUR" jobs
expect "jobs shows the name and state" "$OUT" "cli-one"
expect "jobs shows SUCCEEDED" "${OUT^^}" "SUCCEEDED"
run "jobs --json" 0 "$FULGUR" jobs --json
ID=$("$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print(j[0]["id"])' "$OUT")
[[ -n $ID ]] && pass "jobs --json is a JSON array of jobs" || fail "jobs --json" "$OUT"
run "status --json" 0 "$FULGUR" status "$ID" --json
"$PY" - "$OUT" <<'PY' && pass "the job ran the merged config: 3 epochs (__base__ + child), steps logged every 4" || fail "status --json content" "$OUT"
import json, sys
j = json.loads(sys.argv[1])
assert j["state"] == "SUCCEEDED", j
assert j["progress"]["maxEpochs"] == 3, j["progress"]
assert j["progress"]["globalStep"] == 24, j["progress"]
assert "val/Accuracy" in j["metrics"]
PY
run "status (human)" 0 "$FULGUR" status "$ID"
expect "status shows the state" "${OUT^^}" "SUCCEEDED"
run "events --json" 0 "$FULGUR" events "$ID" --json
"$PY" - "$OUT" <<'PY' && pass "events: one JSON object per line, seqs 1..N, steps every 4" || fail "events --json" "$OUT"
import json, sys
evs = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
steps = [e["step"]["globalStep"] for e in evs if "step" in e]
assert steps and all(s % 4 == 0 for s in steps), steps
assert evs[-1]["state"]["state"] == "SUCCEEDED"
PY
N=$("$PY" -c 'import sys; print(len([l for l in sys.argv[1].splitlines() if l.strip()]))' "$OUT")
run "watch --from N-2 of a finished job" 0 "$FULGUR" watch "$ID" --from $((N - 2)) --json
"$PY" - "$OUT" "$N" <<'PY' && pass "watch --from replays only what follows" || fail "watch --from" "$OUT"
import json, sys
evs = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
n = int(sys.argv[2])
assert [e["seq"] for e in evs] == [n - 1, n], [e["seq"] for e in evs]
PY

# ---- errors and exit statuses ----
run "cancel a finished job: exit 2" 2 "$FULGUR" cancel "$ID"
expect "it says FAILED_PRECONDITION" "$ERR" "FAILED_PRECONDITION"
run "status of an unknown id: exit 2" 2 "$FULGUR" status nosuchjob
expect "it says NOT_FOUND" "$ERR" "NOT_FOUND"
sed 's/max_epochs: 2/max_epoch: 2/' "$WORK/base.yaml" >"$WORK/bad.yaml"
run "submit a bad config: exit 2" 2 "$FULGUR" submit fit --config "$WORK/bad.yaml"
expect "the daemon's message has file:line:col and the key" "$ERR" "trainer.max_epoch"
expect "and INVALID_ARGUMENT" "$ERR" "INVALID_ARGUMENT"
run "no daemon there: exit 3" 3 "$FULGUR" jobs --server "unix:$WORK/nothing.sock"
run "submit without a stage: exit 2" 2 "$FULGUR" submit --config "$WORK/base.yaml"

# ---- a job that fails: watch exits 1 ----
run "submit a job that will fail" 0 "$FULGUR" submit fit --config "$WORK/base.yaml" \
  --data.init_args.dataset_cfg.fit.init_args.shape='[21]' --json
FID=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$OUT")
run "watch a failing job: exit 1" 1 "$FULGUR" watch "$FID"
expect "the failure is reported" "$OUT$ERR" "failed"

# ---- cancel a running job: its watcher exits 130 ----
run "submit a long job" 0 "$FULGUR" submit fit --config "$WORK/base.yaml" --trainer.max_epochs=100000 --json
LID=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$OUT")
"$FULGUR" watch "$LID" >"$WORK/wout" 2>"$WORK/werr" &
WPID=$!
for _ in $(seq 200); do grep -q "step" "$WORK/wout" 2>/dev/null && break; sleep 0.05; done
run "pause it" 0 "$FULGUR" pause "$LID"
wait $WPID
WST=$?
[[ $WST -eq 0 ]] && pass "a watcher of a paused job exits 0" || fail "watcher exit on pause: $WST" "$(cat "$WORK/werr")"
run "status says PAUSED" 0 "$FULGUR" status "$LID" --json
expect "PAUSED" "$OUT" '"PAUSED"'
run "resume it" 0 "$FULGUR" resume "$LID"
"$FULGUR" watch "$LID" >"$WORK/wout2" 2>"$WORK/werr2" &
WPID=$!
for _ in $(seq 200); do [[ $("$FULGUR" status "$LID" --json 2>/dev/null) == *'"RUNNING"'* ]] && break; sleep 0.1; done
sleep 1
run "cancel the running job" 0 "$FULGUR" cancel "$LID"
wait $WPID
WST=$?
[[ $WST -eq 130 ]] && pass "its watcher exits 130 (cancelled)" || fail "watcher exit on cancel: $WST" "$(tail -5 "$WORK/wout2")" "$(cat "$WORK/werr2")"

# ---- tokens ----
echo "s3cret-token" >"$WORK/token"
"$FULGURD" --state-dir "$WORK/state2" --listen "unix:$WORK/t.sock" --root "$WORK" --token-file "$WORK/token" \
  2>"$WORK/fulgurd2.log" &
TPID=$!
for _ in $(seq 200); do [[ -S $WORK/t.sock ]] && break; sleep 0.05; done
run "no token: exit 2, UNAUTHENTICATED" 2 "$FULGUR" jobs --server "unix:$WORK/t.sock"
expect "it says UNAUTHENTICATED" "$ERR" "UNAUTHENTICATED"
run "--token-file: accepted" 0 "$FULGUR" jobs --server "unix:$WORK/t.sock" --token-file "$WORK/token"
kill -TERM $TPID
wait $TPID && pass "token daemon exits 0" || fail "token daemon exit status"

kill -TERM $DPID
wait $DPID && pass "fulgurd exits 0 on SIGTERM" || fail "fulgurd exit status" "$(tail -5 "$WORK/fulgurd.log")"
finish
