#!/usr/bin/env bash
# install-ort.sh - installs ONNX Runtime's CPU library for Node.js
# (onnxruntime-node 1.30.0, from the npm registry) into .ort/ in the
# repository (ignored by git). make test then checks that ONNX Runtime
# computes the models lstm export writes as PyTorch did (tests/cli/onnx.sh),
# and bench/compare.sh gains an ONNX Runtime column. Needs npm; neither the
# build nor make test needs this. Another copy can be used instead through
# LSTM_ORT=/path/to/node_modules/onnxruntime-node.
set -eu
cd "$(dirname "$0")/.."
command -v npm >/dev/null 2>&1 || { echo "install-ort.sh: npm not found (scripts/install-deps.sh --demo installs it)" >&2; exit 1; }
if [ -L .ort ] && [ ! -d .ort ]; then
    echo "install-ort.sh: .ort is a link to $(readlink .ort), which is not a folder: remove it or create its target" >&2
    exit 1
fi
mkdir -p .ort
[ -f .ort/package.json ] || echo '{"private": true}' >.ort/package.json
# the CPU build only: the package's install script would fetch CUDA libraries
ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm install --prefix .ort --no-audit --no-fund onnxruntime-node@1.30.0
node -e 'require(process.argv[1]); console.log("install-ort.sh: onnxruntime-node ready in .ort/")' \
    "$PWD/.ort/node_modules/onnxruntime-node"
