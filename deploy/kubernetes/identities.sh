#!/bin/sh
# Issues an identity for each mesh node from the mesh authority kept OUTSIDE the cluster
# and prints the Secret the DaemonSet mounts (the authority's certificate and every
# node's certificate and key; never the authority's key):
#
#   deploy/kubernetes/identities.sh AUTHORITY_DIR NODE... | kubectl apply -f -
#
# AUTHORITY_DIR is what `meshctl identity init-authority --dir AUTHORITY_DIR` made. Node
# names are the Kubernetes node names. Re-run it to add nodes or renew certificates; the
# agents pick the new files up on restart.
set -eu
if [ "$#" -lt 2 ]; then
    echo "usage: $0 AUTHORITY_DIR NODE..." >&2
    exit 2
fi
authority=$1
shift
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
meshctl=${MESHCTL:-meshctl}
set -- "$@"
args="--from-file=authority.cert=$authority/authority.cert"
for node in "$@"; do
    "$meshctl" identity issue --authority "$authority" --name "$node" --out "$out" >&2
    args="$args --from-file=$node.cert=$out/$node.cert --from-file=$node.key=$out/$node.key"
done
# shellcheck disable=SC2086 # $args is a list of flags
kubectl create secret generic x0tta6bl4-identity --namespace x0tta6bl4 $args \
    --dry-run=client -o yaml
