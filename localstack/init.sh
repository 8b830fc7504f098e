#!/usr/bin/env bash
# Runs the local stack's handlers over an AWS emulator: creates the queues (with their redrive
# policies) and tables that template.yaml declares, then serves the API on 127.0.0.1:8080.
#
#   bash localstack/init.sh                          # LocalStack on 127.0.0.1:4566 (docker-compose.yml)
#   AWS_ENDPOINT_URL=http://127.0.0.1:5000 bash localstack/init.sh   # moto, or any other endpoint
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
exec cargo run -p local-stack -- --backend aws --provision --stack-name "${NOTIFY_STACK_NAME:-notify-local}" "$@"
