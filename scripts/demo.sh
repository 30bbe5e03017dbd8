#!/usr/bin/env bash
# demo.sh: start hallmark-builder on a free loopback port with a fresh data dir
# under .hallmark/demo, build and test examples/go_service through it with
# every action executed remotely, run the binary, rebuild after `bazel clean`
# (served from the ActionCache), print what happened, and stop the farm.
# Run through `make demo`, which installs the dependencies and builds ./bin.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo=$root/.hallmark/demo
builder=${HALLMARK_BUILDER:-$root/bin/hallmark-builder}
[ -x "$builder" ] || { echo "demo: $builder is missing (run: make bin)" >&2; exit 1; }
command -v bazel >/dev/null || { echo "demo: bazel is missing (apt-get install bazel-bootstrap)" >&2; exit 1; }

rc=$("$root/scripts/bazel-env.sh" --print)

# A free loopback port: ask the kernel for one.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-60000 -n 1)
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-60000 -n 1)
addr=127.0.0.1:$port

rm -rf "$demo/data"
mkdir -p "$demo"
echo "demo: starting hallmark-builder on $addr (data: $demo/data, log: $demo/builder.log)"
"$builder" --listen="$addr" --data="$demo/data" --metrics-listen="127.0.0.1:$mport" >"$demo/builder.log" 2>&1 &
farm=$!
stop_farm() {
  if kill -0 "$farm" 2>/dev/null; then
    kill -TERM "$farm" 2>/dev/null || true
    wait "$farm" 2>/dev/null || true
    echo "demo: stopped hallmark-builder"
  fi
}
trap stop_farm EXIT

for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$farm" 2>/dev/null || { echo "demo: hallmark-builder exited:" >&2; cat "$demo/builder.log" >&2; exit 1; }
  sleep 0.1
done

ws=$root/examples/go_service
bzl() {
  (cd "$ws" && bazel --output_base="$demo/output_base" --bazelrc="$rc" "$@")
}
remote=(--color=no --curses=no
  "--remote_executor=grpc://$addr" --spawn_strategy=remote --remote_local_fallback=false)
summary() { grep -E '^INFO: [0-9]+ process' "$1" | tail -1 | sed 's/^INFO: //'; }

echo "demo: bazel build //... (every action executed on hallmark)"
if ! bzl build "${remote[@]}" //... >"$demo/build-cold.log" 2>&1; then
  tail -30 "$demo/build-cold.log" >&2
  echo "demo: the remote build failed (see $demo/build-cold.log)" >&2; exit 1
fi

echo "demo: bazel test //..."
if ! bzl test "${remote[@]}" --test_output=errors //... >"$demo/test.log" 2>&1; then
  tail -30 "$demo/test.log" >&2
  echo "demo: the remote tests failed (see $demo/test.log)" >&2; exit 1
fi
grep -E '^//' "$demo/test.log" || true

echo "demo: running the built service"
"$ws/bazel-bin/cmd/server/server_/server" -selftest

echo "demo: bazel clean, then rebuild (served from hallmark's ActionCache)"
bzl clean >/dev/null 2>&1
bzl build "${remote[@]}" //... >"$demo/build-warm.log" 2>&1 || { echo "demo: the rebuild failed (see $demo/build-warm.log)" >&2; exit 1; }

bzl shutdown >/dev/null 2>&1 || true
echo
echo "== what happened =="
echo "cold build:   $(summary "$demo/build-cold.log")   ($(grep -o 'Elapsed time: [0-9.]*s' "$demo/build-cold.log" | tail -1))"
echo "tests:        $(summary "$demo/test.log")"
echo "after clean:  $(summary "$demo/build-warm.log")   ($(grep -o 'Elapsed time: [0-9.]*s' "$demo/build-warm.log" | tail -1))"
echo "farm log:     $demo/builder.log"
