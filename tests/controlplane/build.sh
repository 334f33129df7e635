#!/usr/bin/env bash
# Builds the real control plane the tests run against, from the pinned Go
# modules beside this script, into a cache directory keyed by the pins:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#   (kube/go.mod: k8s.io/kubernetes and etcd at the versions it was tested with)
#   helm (helm/go.mod: its own module, since Helm pins a newer client-go)
# A build whose pins (go.mod, go.sum, this script, the Go version) are unchanged
# is reused. Progress goes to stderr; the last line on stdout is the bin directory.
# Cold, on 2 cores: about 25 minutes (README, "Tests"); warm: under a second.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

kube_version="$(cd "$here/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
helm_version="$(cd "$here/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)"
if [[ -z "$kube_version" || -z "$helm_version" ]]; then
  echo "build.sh: cannot read the pinned versions from kube/go.mod and helm/go.mod" >&2
  exit 2
fi

key="$(cd "$here" && { go version; cat build.sh kube/go.mod kube/go.sum kube/etcd/main.go helm/go.mod helm/go.sum; } | sha256sum | cut -c1-12)"
root="${AGENTFACTORY_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentfactory/controlplane}"
bin="$root/kubernetes-$kube_version-helm-$helm_version-$key"

if [[ -f "$bin/.complete" ]]; then
  echo "control plane: reusing $bin" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$bin.partial"
major="${kube_version#v}"; major="${major%%.*}"
minor="${kube_version#v*.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# Helm's default Kubernetes version (for `helm template` and lint) is its client-go's, as
# Helm's own release builds set it; unset, it would be 1.20.
client_go="$(cd "$here/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)"
client_minor="${client_go#v0.}"; client_minor="${client_minor%%.*}"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_minor"
done

targets=(
  "kube etcd ./etcd"
  "kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
  "kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager"
  "kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler"
  "kube kubectl k8s.io/kubernetes/cmd/kubectl"
  "helm helm helm.sh/helm/v3/cmd/helm"
)
echo "control plane: building Kubernetes $kube_version and Helm $helm_version into $bin" >&2
started=$SECONDS
n=0
for target in "${targets[@]}"; do
  read -r module name package <<<"$target"
  n=$((n + 1))
  if [[ -x "$bin.partial/$name" ]]; then
    echo "  [$n/${#targets[@]}] $name: already built" >&2
    continue
  fi
  flags="$kube_ldflags"
  [[ "$module" == helm ]] && flags="$helm_ldflags"
  echo "  [$n/${#targets[@]}] $name ($package) ..." >&2
  t0=$SECONDS
  (cd "$here/$module" && go build -trimpath -ldflags "$flags" -o "$bin.partial/$name.tmp" "$package")
  mv "$bin.partial/$name.tmp" "$bin.partial/$name"
  echo "  [$n/${#targets[@]}] $name: $((SECONDS - t0)) s" >&2
done
touch "$bin.partial/.complete"
rm -rf "$bin"
mv "$bin.partial" "$bin"
# Earlier builds (other pins) are 400 MB each: keep only this one.
find "$root" -mindepth 1 -maxdepth 1 -name 'kubernetes-*' ! -name "$(basename "$bin")" -exec rm -rf {} +
echo "control plane: built in $((SECONDS - started)) s" >&2
echo "$bin"
