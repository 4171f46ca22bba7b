#!/usr/bin/env bash
# Prepares this machine to build softalign's CUDA backend offline:
#
#   scripts/setup-cuda-build.sh
#   cargo build --release -p softalign --features cuda
#
# burn's `cuda` feature compiles cubecl-llvm (PTX code generation through LLVM), whose build
# script (tracel-llvm-bundler) downloads an LLVM 23 bundle from GitHub into
# $XDG_DATA_HOME/tracel/tracel-llvm-<version>/ unless that folder already holds the sentinel file
# `.tracel-llvm-installed`. This script fills that folder from Debian's LLVM 22 packages instead
# (headers, static libraries, and an `llvm-config` that reports them), which cubecl-llvm's C API
# use links against; LLVM 22 emits PTX up to ISA 9.0, enough for CUDA 13.0 drivers (580).
#
# Nothing here needs a GPU or the CUDA toolkit: cudarc loads the driver (libcuda) at run time,
# and picks its CUDA API version at build time (the newest when no nvcc is found; set
# CUDARC_CUDA_VERSION=13000 to pin it). Run as root (it installs Debian packages), once per
# machine; it is idempotent.
set -euo pipefail

llvm_major=22
here=$(cd "$(dirname "$0")/.." && pwd)

# The bundle version cubecl-llvm asks for, read from Cargo.lock (e.g. 23.1.0-4).
bundler=$(grep -A1 '^name = "tracel-llvm-bundler"$' "$here/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')
if [ -z "$bundler" ]; then
  echo "setup-cuda-build: tracel-llvm-bundler is not in Cargo.lock; nothing to prepare" >&2
  exit 1
fi
prefix="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-$bundler"

if [ -f "$prefix/.tracel-llvm-installed" ] && grep -q setup-cuda-build "$prefix/bin/llvm-config" 2>/dev/null &&
  "$prefix/bin/llvm-config" --version >/dev/null 2>&1 && [ -e "/usr/lib/llvm-$llvm_major/lib/libPolly.a" ]; then
  echo "setup-cuda-build: $prefix is ready (LLVM $("$prefix/bin/llvm-config" --version))"
  exit 0
fi

llvm=/usr/lib/llvm-$llvm_major
# llvm-config's static library list names Polly, which Debian ships apart (libpolly-22-dev).
if [ ! -x "$llvm/bin/llvm-config" ] || [ ! -e "$llvm/lib/libPolly.a" ]; then
  echo "setup-cuda-build: installing Debian's llvm-$llvm_major-dev (static LLVM libraries and headers)"
  export DEBIAN_FRONTEND=noninteractive
  # llvm-22 is in bookworm-security; the package lists may predate it.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    "llvm-$llvm_major-dev" "libllvm$llvm_major" "libpolly-$llvm_major-dev" zlib1g-dev libzstd-dev libxml2-dev libffi-dev libedit-dev libncurses-dev >/dev/null
fi

# The bundle's layout: bin/llvm-config, include/, lib/ — here links into Debian's tree, and an
# llvm-config that reports Debian's folders.
mkdir -p "$prefix/bin"
ln -sfn "$llvm/include" "$prefix/include"
ln -sfn "$llvm/lib" "$prefix/lib"
# The wrapper runs Debian's llvm-config; the bundler links each system library by its bare
# name, and Debian names some by path (/usr/lib/x86_64-linux-gnu/libz3.so): give those as -lNAME.
cat >"$prefix/bin/llvm-config" <<'EOF'
#!/bin/sh
# Debian's LLVM standing in for the tracel-llvm bundle (written by scripts/setup-cuda-build.sh).
out=$(LLVM_CONFIG "$@") || exit $?
case " $* " in
  *" --system-libs "*)
    for word in $out; do
      case $word in
        /*/lib*.so) name=${word##*/lib}; printf -- '-l%s ' "${name%.so}" ;;
        *) printf '%s ' "$word" ;;
      esac
    done
    echo ;;
  *) printf '%s\n' "$out" ;;
esac
EOF
sed -i "s#LLVM_CONFIG#$llvm/bin/llvm-config#" "$prefix/bin/llvm-config"
chmod +x "$prefix/bin/llvm-config"
touch "$prefix/.tracel-llvm-installed"
echo "setup-cuda-build: $prefix now holds LLVM $("$prefix/bin/llvm-config" --version) (Debian's llvm-$llvm_major)"
echo "setup-cuda-build: build with: cargo build --release -p softalign --features cuda"
