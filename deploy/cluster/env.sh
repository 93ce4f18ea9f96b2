# Shared settings of deploy/cluster/head.sh and worker.sh (sourced, not run). Every value can be set in the
# environment before calling a script; the defaults suit one node per machine.
#
# Token authentication (Ray 2.60): every Ray process of the cluster -- head, workers and every driver
# (`bsemu train --address ...`, `bsemu cluster-check ...`) -- needs RAY_AUTH_MODE=token and the SAME token,
# read from the file RAY_AUTH_TOKEN_PATH names. head.sh generates it once; copy that file to every node
# (and to wherever a driver runs) at the same path, readable by its owner only.

: "${RAY_AUTH_MODE:=token}"                                 # token (recommended) or disabled
: "${RAY_AUTH_TOKEN_PATH:=$HOME/.bsemu/ray_auth_token}"     # the cluster's token, one line of hex
export RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH

# Ports (TCP). The firewall between the nodes (and the driver's machine) must let them through:
: "${BSEMU_RAY_PORT:=6379}"                 # head only: the GCS, the address workers and drivers join
: "${BSEMU_DASHBOARD_PORT:=8265}"           # head only: Ray's dashboard / job API (HTTP; open it only to admins)
: "${BSEMU_NODE_MANAGER_PORT:=6380}"        # every node: raylet
: "${BSEMU_OBJECT_MANAGER_PORT:=6381}"      # every node: object transfers
: "${BSEMU_RUNTIME_ENV_PORT:=6382}"         # every node: runtime-env agent
: "${BSEMU_AGENT_GRPC_PORT:=6383}"          # every node: dashboard agent (gRPC)
: "${BSEMU_AGENT_HTTP_PORT:=6384}"          # every node: dashboard agent (HTTP)
: "${BSEMU_METRICS_PORT:=6385}"             # every node: metrics export
: "${BSEMU_MIN_WORKER_PORT:=10002}"         # every node: Ray worker processes (actors), this range
: "${BSEMU_MAX_WORKER_PORT:=19999}"
# ...and bsemu's own ZeroMQ sockets: every BS / link actor and the driver bind a random port in
# 49152-65535 (ZeroMQ's default range) on their node's address; open that range between the nodes.

: "${BSEMU_TEMP_DIR:=}"                     # Ray's temp/log folder (default /tmp/ray); one per node on a shared host
: "${BSEMU_NODE_IP:=}"                      # this node's address as the others reach it (default: Ray's guess)

BSEMU_RAY="${BSEMU_RAY:-ray}"               # the ray executable of bsemu's environment (e.g. .venv/bin/ray)

bsemu_node_args=(
  --node-manager-port="$BSEMU_NODE_MANAGER_PORT"
  --object-manager-port="$BSEMU_OBJECT_MANAGER_PORT"
  --runtime-env-agent-port="$BSEMU_RUNTIME_ENV_PORT"
  --dashboard-agent-grpc-port="$BSEMU_AGENT_GRPC_PORT"
  --dashboard-agent-listen-port="$BSEMU_AGENT_HTTP_PORT"
  --metrics-export-port="$BSEMU_METRICS_PORT"
  --min-worker-port="$BSEMU_MIN_WORKER_PORT"
  --max-worker-port="$BSEMU_MAX_WORKER_PORT"
  --disable-usage-stats
)
if [ -n "$BSEMU_TEMP_DIR" ]; then bsemu_node_args+=(--temp-dir="$BSEMU_TEMP_DIR"); fi
if [ -n "$BSEMU_NODE_IP" ]; then bsemu_node_args+=(--node-ip-address="$BSEMU_NODE_IP"); fi
