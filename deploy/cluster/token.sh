#!/usr/bin/env bash
# Write the cluster's Ray authentication token once: 256 random bits as hex, into $RAY_AUTH_TOKEN_PATH
# (default ~/.bsemu/ray_auth_token), readable by its owner only. An existing token is kept. Prints the path.
# Every node and every driver of the cluster needs this same file (head.sh calls this script; copy the file
# to the workers, or let `ray up` copy it: see cluster.yaml's file_mounts).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
if [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
  mkdir -p "$(dirname "$RAY_AUTH_TOKEN_PATH")"
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$RAY_AUTH_TOKEN_PATH")
  echo "token.sh: wrote a new cluster token: copy it to every node and driver at the same path" >&2
fi
echo "$RAY_AUTH_TOKEN_PATH"
