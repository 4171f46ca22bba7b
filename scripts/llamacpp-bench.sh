#!/usr/bin/env bash
# llama.cpp's own benchmark on a GGUF file, the baseline of `softalign bench generate`:
#
#   scripts/llamacpp-bench.sh MODEL.gguf [extra llama-bench flags]
#
# runs `llama-bench -t 2 -p 512 -n 128` (prefill of 512 tokens, decode of 128, 2 threads) on the
# file. The first run builds llama-bench from the llama.cpp that llama-cpp-python 0.3.36 vendors
# in its source package (fetched from PyPI with pip, as is cmake; nothing else is downloaded)
# into .cache/llamacpp/, with the native instruction set (-march=native). Later runs reuse it.
#
# llama.cpp busy-waits its threads: measure on an idle machine, alternating with
# `softalign bench generate --model MODEL.gguf` (A B A B), and name the CPU (lscpu).
set -euo pipefail
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 MODEL.gguf [llama-bench flags]" >&2
    exit 2
fi
model=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SOFTALIGN_LLAMACPP_CACHE:-$root/.cache/llamacpp}
version=0.3.36
bench=$cache/build/bin/llama-bench
if [ ! -x "$bench" ]; then
    mkdir -p "$cache"
    if [ ! -x "$cache/venv/bin/cmake" ]; then
        python3 -m venv "$cache/venv"
        "$cache/venv/bin/pip" install --quiet cmake
    fi
    if [ ! -d "$cache/llama_cpp_python-$version" ]; then
        "$cache/venv/bin/pip" download --quiet --no-deps --no-binary :all: \
            "llama-cpp-python==$version" -d "$cache/sdist"
        tar -xzf "$cache/sdist/llama_cpp_python-$version.tar.gz" -C "$cache"
    fi
    src=$cache/llama_cpp_python-$version/vendor/llama.cpp
    "$cache/venv/bin/cmake" -S "$src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >&2
    "$cache/venv/bin/cmake" --build "$cache/build" --target llama-bench -j "$(nproc)" >&2
fi
exec "$bench" -m "$model" -t 2 -p 512 -n 128 "$@"
