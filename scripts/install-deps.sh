#!/usr/bin/env bash
# install-deps.sh - installs what lstm needs on Debian 12 that the machine lacks:
# the build (a C compiler, make, pkg-config, Jansson, OpenBLAS) and, with --demo,
# npm for the demo's corpus. Works as root (no sudo needed) and as a user with
# sudo. Runs `apt-get update` before installing; installs nothing when all is
# there. npm is installed only when no npm is on the PATH: a Node.js installed
# from elsewhere brings its own, and Debian's npm package would conflict with it.
#
#   scripts/install-deps.sh            # build dependencies
#   scripts/install-deps.sh --mpi      # and Open MPI, for training on several processes
#   scripts/install-deps.sh --demo     # and npm, for make demo
#   scripts/install-deps.sh --onnx     # and libprotobuf-c, protoc-c (lstm convert, export)
#                                      # and ONNX's node tests and checker, used by make test
#   scripts/install-deps.sh --embed    # and the ARM cross compiler and qemu-arm (make test runs
#                                      # the embeddable runtime on ARM with them)
#   scripts/install-deps.sh --fuzz     # and clang with libFuzzer (make fuzz; make test then
#                                      # builds everything with clang too)
#   scripts/install-deps.sh PKG...     # and these Debian packages too
set -eu
pkgs=(build-essential pkg-config libjansson-dev libopenblas-dev)
for a in "$@"; do
    case $a in
    --demo) command -v npm >/dev/null 2>&1 || pkgs+=(npm) ;;
    --mpi) pkgs+=(openmpi-bin libopenmpi-dev) ;;
    --onnx) pkgs+=(libprotobuf-c-dev protobuf-c-compiler libonnx-testdata python3-onnx) ;;
    --embed) pkgs+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user) ;;
    --fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install-deps.sh: unknown option $a" >&2; exit 2 ;;
    *) pkgs+=("$a") ;;
    esac
done
need=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "install-deps.sh: nothing to install: ${pkgs[*]} are all there" >&2
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-deps.sh: need root or sudo to install: ${need[*]}" >&2
        exit 1
    }
    sudo=(sudo)
fi
echo "install-deps.sh: installing ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
