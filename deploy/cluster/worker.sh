#!/usr/bin/env bash
# Join a worker node to a bsemu Ray cluster (see deploy/cluster/README.md).
#
#   deploy/cluster/worker.sh HEAD_IP:PORT [--block] [more `ray start` options]
#
# Needs the head's token at $RAY_AUTH_TOKEN_PATH (default ~/.bsemu/ray_auth_token) when
# RAY_AUTH_MODE=token (the default). With --block it stays in the foreground and SIGTERM to it (`kill PID`)
# stops this node's Ray processes only; without it, stop with `ray stop` (every Ray process of this
# user on the machine).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: worker.sh HEAD_IP:PORT [ray start options...]" >&2
  exit 2
fi
address="$1"; shift
if [ "$RAY_AUTH_MODE" = token ] && [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
  echo "worker.sh: no token at $RAY_AUTH_TOKEN_PATH: copy the head's token file there" \
       "(or set RAY_AUTH_TOKEN_PATH to where it is)" >&2
  exit 2
fi
exec "$BSEMU_RAY" start --address="$address" "${bsemu_node_args[@]}" "$@"
