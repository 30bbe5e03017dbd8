#!/usr/bin/env bash
# bench/run.sh: issue 3's benchmark. Generates (deterministically, with
# bench/cmd/genws) a rules_go workspace of about 300 actions and a workspace of
# 500 tiny genrules, and builds each three ways in one run:
#   local   Bazel's linux-sandbox (--spawn_strategy=linux-sandbox)
#   cold    hallmark, empty data dir, fresh output base
#   warm    hallmark again after `bazel clean` (ActionCache hits)
# Each timed build follows an untimed `--nobuild` of the same command, so the
# times are execution (plus Bazel's own bookkeeping), not loading/analysis.
# It also times bare `bwrap ... /bin/true` launches to get a per-action floor.
# Prints seconds and ratios; writes them to $OUT/results.txt.
#
# Env: OUT (default .hallmark/bench), HALLMARK_BUILDER (default bin/hallmark-builder),
#      REMOTE_JOBS (default 8), GENRULES (default 500), ONLY ("go" or "genrule").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$root/.hallmark/bench}
builder=${HALLMARK_BUILDER:-$root/bin/hallmark-builder}
remote_jobs=${REMOTE_JOBS:-8}
genrules=${GENRULES:-500}
only=${ONLY:-}
[ -x "$builder" ] || { echo "bench: $builder is missing (run: make bin)" >&2; exit 1; }
command -v bazel >/dev/null || { echo "bench: bazel is missing (apt-get install bazel-bootstrap)" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "bench: bwrap is missing (apt-get install bubblewrap)" >&2; exit 1; }

rc=$("$root/scripts/bazel-env.sh" --print)
mkdir -p "$out"
results=$out/results.txt
: > "$results"
say() { echo "$*" | tee -a "$results"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
freeport() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1
}

farm=""
stop_farm() {
  if [ -n "$farm" ] && kill -0 "$farm" 2>/dev/null; then
    kill -TERM "$farm"; wait "$farm" 2>/dev/null || true
  fi
  farm=""
}
trap stop_farm EXIT

start_farm() { # $1 = data dir; sets addr and farm
  local port mport
  port=$(freeport); mport=$(freeport)
  addr=127.0.0.1:$port
  "$builder" --listen="$addr" --data="$1" --metrics-listen="127.0.0.1:$mport" >"$1.log" 2>&1 &
  farm=$!
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$farm" 2>/dev/null || { cat "$1.log" >&2; echo "bench: hallmark-builder exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: hallmark-builder did not listen on $addr" >&2; exit 1
}

# timed_build NAME WS OUTPUT_BASE FLAGS... : untimed --nobuild, then the timed
# build; sets t (seconds) and stats (Bazel's process summary).
timed_build() {
  local name=$1 ws=$2 ob=$3; shift 3
  local log=$out/$name.log
  (cd "$ws" && bazel --output_base="$ob" --bazelrc="$rc" build --color=no --curses=no --symlink_prefix=/ --nobuild "$@" //...) >"$log.analysis" 2>&1 \
    || { tail -30 "$log.analysis" >&2; echo "bench: analysis for $name failed" >&2; exit 1; }
  local s e
  s=$(now)
  (cd "$ws" && bazel --output_base="$ob" --bazelrc="$rc" build --color=no --curses=no --symlink_prefix=/ "$@" //...) >"$log" 2>&1 \
    || { tail -30 "$log" >&2; echo "bench: build $name failed (see $log)" >&2; exit 1; }
  e=$(now)
  t=$(secs "$s" "$e")
  stats=$(grep -E '^INFO: [0-9]+ process' "$log" | tail -1 | sed 's/^INFO: //')
  say "  $name: ${t}s  ($stats)"
}

# three_ways KIND WS: sets t_local, t_cold, t_warm and n_actions (cold remote count)
three_ways() {
  local kind=$1 ws=$2
  local ob=$out/ob-$kind
  rm -rf "$ob-local" "$ob-remote" "$out/data-$kind" "$out/data-$kind.log"
  timed_build "$kind-local" "$ws" "$ob-local" --spawn_strategy=linux-sandbox
  t_local=$t
  (cd "$ws" && bazel --output_base="$ob-local" shutdown) >/dev/null 2>&1 || true

  start_farm "$out/data-$kind"
  local remote=("--remote_executor=grpc://$addr" --spawn_strategy=remote --remote_local_fallback=false "--jobs=$remote_jobs")
  timed_build "$kind-hallmark-cold" "$ws" "$ob-remote" "${remote[@]}"
  t_cold=$t
  n_actions=$(echo "$stats" | grep -oE '[0-9]+ remote($|,)' | grep -oE '[0-9]+' || echo 0)
  (cd "$ws" && bazel --output_base="$ob-remote" --bazelrc="$rc" clean) >/dev/null 2>&1
  timed_build "$kind-hallmark-warm" "$ws" "$ob-remote" "${remote[@]}"
  t_warm=$t
  (cd "$ws" && bazel --output_base="$ob-remote" shutdown) >/dev/null 2>&1 || true
  stop_farm
  say "  ratios: cold/local $(ratio "$t_cold" "$t_local")  warm/local $(ratio "$t_warm" "$t_local")"
}

say "hallmark bench on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), remote --jobs=$remote_jobs"

if [ -z "$only" ] || [ "$only" = go ]; then
  (cd "$root" && go run ./bench/cmd/genws -kind=go -out="$out/gows") >/dev/null
  say "rules_go workspace ($out/gows):"
  three_ways go "$out/gows"
  say "  goals: cold/local <= 0.6, warm/local <= 0.1"
fi

if [ -z "$only" ] || [ "$only" = genrule ]; then
  (cd "$root" && go run ./bench/cmd/genws -kind=genrule -genrules="$genrules" -out="$out/genrules") >/dev/null
  say "genrule workspace ($genrules genrules, $out/genrules):"
  three_ways genrule "$out/genrules"

  # The floor: bare bwrap launches, as many and as parallel as the farm's workers.
  bw=(bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --ro-bind /bin /bin
      --ro-bind /lib /lib --dev /dev --proc /proc --tmpfs /tmp)
  [ -d /lib64 ] && bw+=(--ro-bind /lib64 /lib64)
  "${bw[@]}" /bin/true || { echo "bench: bare bwrap does not run here" >&2; exit 1; }
  s=$(now)
  seq 1 "$genrules" | xargs -P "$(nproc)" -I{} "${bw[@]}" /bin/true
  e=$(now)
  t_bwrap=$(secs "$s" "$e")
  per_bwrap=$(awk -v t="$t_bwrap" -v n="$genrules" 'BEGIN { printf "%.2f", t * 1000 / n }')
  per_cold=$(awk -v t="$t_cold" -v n="$genrules" 'BEGIN { printf "%.2f", t * 1000 / n }')
  per_local=$(awk -v t="$t_local" -v n="$genrules" 'BEGIN { printf "%.2f", t * 1000 / n }')
  say "  bare bwrap /bin/true x$genrules (-P $(nproc)): ${t_bwrap}s = ${per_bwrap} ms/launch (wall, amortised)"
  say "  per action (wall, amortised): local ${per_local} ms, hallmark cold ${per_cold} ms;" \
      "hallmark - bwrap = $(awk -v a="$per_cold" -v b="$per_bwrap" 'BEGIN { printf "%.2f", a - b }') ms (goal <= 2 ms)"
fi
say "results: $results"
