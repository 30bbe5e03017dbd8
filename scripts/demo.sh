#!/usr/bin/env bash
# demo.sh: the whole hallmark pipeline on this machine, on loopback only.
#
#   farm (hallmark-builder --signer) + signer (hallmark-signer, fresh key)
#   + registry (Debian's docker-registry) + TUF repository (hallmark tuf serve)
#
# then, in a fresh git repository copied from examples/go_service (under
# .hallmark/demo/ws, committed on main): build and test it with every action
# executed on the farm, build the image and its signed manifest (a build
# output made by the farm's signer), run the gate test, verify the envelope,
# push image + attestation to the registry, draft a policy with `hallmark
# policy suggest`, admit the image with `hallmark gate check` using keys
# delivered by TUF, show two denials, and rebuild after `bazel clean` from the
# ActionCache without asking the signer again.
#
# Run through `make demo`, which installs the dependencies and builds ./bin.
# Every process started here is stopped on exit; logs stay in .hallmark/demo.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo=$root/.hallmark/demo
bin=${HALLMARK_BIN:-$root/bin}

die() { echo "demo: $*" >&2; exit 1; }
for b in hallmark hallmark-builder hallmark-signer; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing (run: make bin)"
done
command -v bazel >/dev/null || die "bazel is missing (apt-get install bazel-bootstrap)"
command -v git >/dev/null || die "git is missing (apt-get install git)"
registry_bin=$(command -v docker-registry || echo /usr/bin/docker-registry)
[ -x "$registry_bin" ] || die "docker-registry is missing (apt-get install docker-registry)"

t0=$SECONDS
step=0
say() { step=$((step + 1)); printf '\n[%d] %s  (t+%ds)\n' "$step" "$*" "$((SECONDS - t0))"; }
info() { printf '    %s\n' "$*"; }
indent() { sed 's/^/      /'; }

# free_port prints a TCP port nobody listens on at 127.0.0.1.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' && return
  fi
  local p
  while :; do
    p=$(shuf -i 20000-60000 -n 1)
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# ---- processes: started in the background, all stopped on exit ------------
pids=()
names=()
bazel_started=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$bazel_started" ]; then
    bzl shutdown >/dev/null 2>&1 || true
  fi
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if kill -0 "${pids[i]}" 2>/dev/null; then
      kill -TERM "${pids[i]}" 2>/dev/null || true
      wait "${pids[i]}" 2>/dev/null || true
    fi
  done
  [ ${#pids[@]} -eq 0 ] || echo "demo: stopped ${names[*]} (logs in $demo)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: runs CMD in the background, logging to LOG.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# wait_ready NAME LOG CHECK...: waits up to 30 s until CHECK succeeds, failing
# with the process's log if it exits first.
wait_ready() {
  local name=$1 log=$2 pid=${pids[${#pids[@]} - 1]}
  shift 2
  for _ in $(seq 1 300); do
    if "$@" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name exited before it was ready (log: $log)"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "$name was not ready within 30 s (log: $log)"
}
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_ok() { (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\nHost: x\r\n\r\n' "$2" >&3 && head -1 <&3 | grep -q ' 200 ') 2>/dev/null; }

# ---- a fresh demo directory --------------------------------------------------
if [ -d "$demo/output_base" ] && [ -d "$demo/ws" ]; then
  (cd "$demo/ws" && bazel --output_base="$demo/output_base" shutdown >/dev/null 2>&1) || true
fi
rm -rf "$demo"
mkdir -p "$demo"
# The farm's sandboxes run actions as unprivileged users who must reach the
# worker files under the data directory.
chmod 755 "$root/.hallmark" "$demo"

rc=$("$root/scripts/bazel-env.sh" --print)
ws=$demo/ws
bzl() { (cd "$ws" && bazel --output_base="$demo/output_base" --bazelrc="$rc" "$@"); }
farm_port=$(free_port)
addr=127.0.0.1:$farm_port
remote=(--color=no --curses=no "--remote_executor=grpc://$addr" --spawn_strategy=remote
  --genrule_strategy=remote --strategy=remote --remote_local_fallback=false --remote_timeout=120)
summary() { grep -E '^INFO: [0-9]+ process' "$1" | tail -1 | sed 's/^INFO: //'; }
elapsed() { grep -o 'Elapsed time: [0-9.]*s' "$1" | tail -1 | sed 's/Elapsed time: //'; }
signed() { grep -c 'manifest signed' "$demo/signer.log" || true; }

# ---- 1. the source repository ----------------------------------------------
say "workspace: examples/go_service copied into a fresh git repository"
mkdir -p "$ws"
(cd "$root/examples/go_service" && tar --exclude='./bazel-*' -cf - .) | (cd "$ws" && tar -xf -)
g() { git -C "$ws" -c user.email=demo@hallmark.test -c user.name=demo "$@"; }
g init -q -b main .
g add -A
g commit -q -m "go_service: initial commit"
commit=$(g rev-parse HEAD)
info "$ws, commit $commit on main"

# ---- 2. keys, farm, signer --------------------------------------------------
say "signer key, farm and signer"
"$bin/hallmark" keys generate --out="$demo/keys" >"$demo/keys.log" 2>&1 || { cat "$demo/keys.log" >&2; die "hallmark keys generate failed"; }
info "signer key: $demo/keys/signer.key (public: signer.pub)"
sock=$demo/signer.sock
start hallmark-builder "$demo/builder.log" "$bin/hallmark-builder" --listen="$addr" --data="$demo/data" \
  --metrics-listen= --signer="unix:$sock"
wait_ready hallmark-builder "$demo/builder.log" tcp_open "$farm_port"
info "farm:   hallmark-builder on $addr (data $demo/data, log builder.log)"
start hallmark-signer "$demo/signer.log" "$bin/hallmark-signer" --key="$demo/keys/signer.key" \
  --records="$demo/data" --listen="unix:$sock" --source-repository="$ws" --protected-branch=main \
  --untenanted-as=default
wait_ready hallmark-signer "$demo/signer.log" test -S "$sock"
info "signer: hallmark-signer on unix:$sock (reads the farm's records read-only, checks sources against $ws@main; log signer.log)"
builder_id=https://hallmark.build/farm/local

# ---- 3. registry -------------------------------------------------------------
say "registry: Debian's docker-registry on loopback"
reg_port=$(free_port)
mkdir -p "$demo/registry"
cat >"$demo/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $demo/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$reg_port
EOF
start docker-registry "$demo/registry.log" "$registry_bin" serve "$demo/registry/config.yml"
wait_ready docker-registry "$demo/registry.log" http_ok "$reg_port" /v2/
ref=127.0.0.1:$reg_port/go_service:demo
info "registry: http://127.0.0.1:$reg_port (storage $demo/registry/data)"

# ---- 4. TUF ------------------------------------------------------------------
say "TUF repository: the signer's public key and the farm's builder id, served over HTTP"
tuf=$demo/tuf
"$bin/hallmark" tuf init --repo="$tuf" --builders="$builder_id" >"$demo/tuf.log" 2>&1 \
  && "$bin/hallmark" tuf add-key --repo="$tuf" --name=demo-signer --key="$demo/keys/signer.pub" >>"$demo/tuf.log" 2>&1 \
  || { cat "$demo/tuf.log" >&2; die "hallmark tuf init/add-key failed"; }
tuf_port=$(free_port)
start "hallmark-tuf-serve" "$demo/tuf-serve.log" "$bin/hallmark" tuf serve --repo="$tuf" --listen="127.0.0.1:$tuf_port"
wait_ready "hallmark tuf serve" "$demo/tuf-serve.log" http_ok "$tuf_port" /timestamp.json
tuf_flags=(--tuf-root="$tuf/repository/1.root.json" --tuf-url="http://127.0.0.1:$tuf_port" --tuf-cache="$demo/tuf-cache")
info "TUF: http://127.0.0.1:$tuf_port, gates pin $tuf/repository/1.root.json"

# ---- 5. build and test remotely ----------------------------------------------
say "bazel build //... //:manifest (every action executed on the farm; the cold build takes a few minutes)"
bazel_started=1
if ! bzl build "${remote[@]}" //... //:manifest >"$demo/build-cold.log" 2>&1; then
  tail -30 "$demo/build-cold.log" >&2
  die "the remote build failed (see $demo/build-cold.log)"
fi
info "$(summary "$demo/build-cold.log") in $(elapsed "$demo/build-cold.log")"
env=$ws/bazel-bin/manifest.intoto.jsonl
[ -s "$env" ] || die "the envelope $env is not a build output"
info "signed manifest (a build output): bazel-bin/manifest.intoto.jsonl; the signer signed $(signed)"
info "image (OCI layout): bazel-bin/image.oci, digest $(cat "$ws/bazel-bin/image.digest" 2>/dev/null || echo '?')"

say "bazel test //... //:gate_test (unit tests and the gate test, on the farm)"
cp "$demo/keys/signer.pub" "$ws/signer.pub" # gate_test reads it (it is in .gitignore)
if ! bzl test "${remote[@]}" --test_output=errors //... //:gate_test >"$demo/test.log" 2>&1; then
  tail -30 "$demo/test.log" >&2
  die "the remote tests failed (see $demo/test.log)"
fi
grep -E '^//' "$demo/test.log" | indent || true

# ---- 6. verify ---------------------------------------------------------------
say "verify the envelope against the built image manifest"
"$bin/hallmark" verify --key="$demo/keys/signer.pub" --envelope="$env" "$ws/bazel-bin/image.manifest.json" 2>&1 | indent
cosign=$(go env GOPATH 2>/dev/null)/bin/cosign
command -v cosign >/dev/null 2>&1 && cosign=$(command -v cosign)
if [ -x "$cosign" ]; then
  if "$cosign" verify-blob-attestation --key="$demo/keys/signer.pub" --signature="$env" --type=slsaprovenance1 \
    --insecure-ignore-tlog "$ws/bazel-bin/image.manifest.json" >"$demo/cosign-blob.log" 2>&1; then
    info "cosign verify-blob-attestation: $(tail -1 "$demo/cosign-blob.log")"
  else
    cat "$demo/cosign-blob.log" >&2
    die "cosign verify-blob-attestation failed"
  fi
else
  info "cosign is not installed: skipping cosign verify-blob-attestation (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.4.1)"
fi

# ---- 7. push and admit -------------------------------------------------------
say "hallmark push: image + attestation to $ref"
"$bin/hallmark" push --envelope="$env" --oci-layout="$ws/bazel-bin/image.oci" "$ref" >"$demo/push.log" 2>&1 \
  || { cat "$demo/push.log" >&2; die "hallmark push failed"; }
indent <"$demo/push.log"
pushed=$(awk '/^pushed /{print $2}' "$demo/push.log")
if [ -x "$cosign" ]; then
  if HOME=$demo "$cosign" verify-attestation --key="$demo/keys/signer.pub" --type=slsaprovenance1 --insecure-ignore-tlog \
    --allow-http-registry "${pushed:-$ref}" >"$demo/cosign-att.log" 2>&1; then
    info "cosign verify-attestation of the pushed attestation: verified"
  else
    cat "$demo/cosign-att.log" >&2
    die "cosign verify-attestation failed"
  fi
fi

say "hallmark policy suggest (keys from TUF), then hallmark gate check with it"
policy=$demo/policy.yaml
"$bin/hallmark" policy suggest --identity=prod/go_service "${tuf_flags[@]}" "$ref" >"$policy" 2>"$demo/suggest.log" \
  || { cat "$demo/suggest.log" >&2; die "hallmark policy suggest failed"; }
indent <"$policy"
"$bin/hallmark" gate check --policy="$policy" --identity=prod/go_service "${tuf_flags[@]}" \
  --audit="$demo/audit.jsonl" "$ref" >"$demo/gate-allow.log" 2>&1 || { cat "$demo/gate-allow.log" >&2; die "the gate denied the signed image"; }
indent <"$demo/gate-allow.log"
grep -q requireProtectedBranch "$policy" && info "the manifest records the protected branch: the policy requires it"

# ---- 8. denials --------------------------------------------------------------
say "deny: a policy that accepts only code under services/other (the image was built from . and cmd/server)"
other=$demo/policy-other.yaml
awk '
  /pathPrefixes:/ { print; inlist = 1; sub(/pathPrefixes:.*/, ""); ind = $0; print ind "  - services/other"; next }
  inlist && /^ *- / { next }
  { inlist = 0; print }
' "$policy" >"$other"
if "$bin/hallmark" gate check --policy="$other" --identity=prod/go_service "${tuf_flags[@]}" \
  --audit="$demo/audit.jsonl" "$ref" >"$demo/gate-deny.log" 2>&1; then
  cat "$demo/gate-deny.log" >&2
  die "the gate admitted an image built outside the policy's paths"
fi
indent <"$demo/gate-deny.log"

say "deny: an uncommitted source change (greeting/greeting.go) makes the manifest action fail"
src=$ws/greeting/greeting.go
cp "$src" "$demo/greeting.go.orig"
# A change that reaches the binary (a comment or an unused function compiles
# or links to the same bytes, and Bazel would rightly sign nothing new).
sed -i 's/"Hello, "/"Howdy, "/' "$src"
cmp -s "$src" "$demo/greeting.go.orig" && die "could not edit $src"
if bzl build "${remote[@]}" //:manifest >"$demo/build-uncommitted.log" 2>&1; then
  die "the manifest of an uncommitted change was signed (see $demo/build-uncommitted.log)"
fi
grep -m1 'greeting/greeting.go' "$demo/build-uncommitted.log" | sed 's/^ERROR: //' | fold -w 100 | indent || true
cp "$demo/greeting.go.orig" "$src"

# ---- 9. clean rebuild --------------------------------------------------------
say "bazel clean, then rebuild //:manifest (from the farm's ActionCache)"
before=$(signed)
bzl clean >/dev/null 2>&1
bzl build "${remote[@]}" //... //:manifest >"$demo/build-warm.log" 2>&1 || die "the rebuild failed (see $demo/build-warm.log)"
after=$(signed)
info "$(summary "$demo/build-warm.log") in $(elapsed "$demo/build-warm.log")"
if [ "$after" = "$before" ]; then
  info "the signer was not asked again ($after manifest(s) signed in total)"
else
  die "the signer was asked again after bazel clean ($before before, $after after)"
fi

echo
echo "== what happened =="
echo "source:        $ws (git, commit ${commit:0:12} on main)"
echo "cold build:    $(summary "$demo/build-cold.log")   ($(elapsed "$demo/build-cold.log"))"
echo "tests:         $(grep -cE '^//.* PASSED' "$demo/test.log") passed on the farm (unit tests and //:gate_test)"
echo "manifest:      $env (signed by hallmark-signer, verified)"
echo "pushed:        ${pushed:-$ref} (+ OCI referrer and cosign .att)"
echo "gate:          ALLOW with the suggested policy and TUF keys; DENY outside the policy's paths;"
echo "               an uncommitted change is refused by the signer"
echo "after clean:   $(summary "$demo/build-warm.log")   ($(elapsed "$demo/build-warm.log")), signer not asked again"
echo "logs:          $demo/{builder,signer,registry,tuf-serve}.log, build-*.log, test.log, audit.jsonl"
