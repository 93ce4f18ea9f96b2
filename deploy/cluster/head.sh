#!/usr/bin/env bash
# Start the head node of a bsemu Ray cluster (see deploy/cluster/README.md).
#
#   deploy/cluster/head.sh [--block] [more `ray start` options, e.g. --num-cpus=8]
#
# With token authentication (the default) the first run writes a fresh token to $RAY_AUTH_TOKEN_PATH
# (default ~/.bsemu/ray_auth_token); later runs reuse it. Copy that file to every worker and driver.
# Prints the address workers and drivers join. With --block it stays in the foreground and SIGTERM to it (`kill PID`)
# stops this node's Ray processes only; without it, stop with `ray stop`, which stops
# EVERY Ray process of this user on the machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

if [ "$RAY_AUTH_MODE" = token ]; then "$here/token.sh" > /dev/null; fi

echo "head.sh: RAY_AUTH_MODE=$RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH; join with" \
     "--address <this host's IP>:$BSEMU_RAY_PORT" >&2
exec "$BSEMU_RAY" start --head --port="$BSEMU_RAY_PORT" --include-dashboard=false \
  --dashboard-port="$BSEMU_DASHBOARD_PORT" "${bsemu_node_args[@]}" "$@"
