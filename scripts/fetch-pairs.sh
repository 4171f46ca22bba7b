#!/usr/bin/env bash
# Fetches 300 real English preference pairs (ShareGPT style, binary labels) from the PyPI source
# distribution of llamafactory 0.9.5 (see ../shared/DATA.md), verifies the sha256 and prints the path.
#
#   scripts/fetch-pairs.sh            → .cache/data/dpo_en_demo.json (relative to the repository root)
#
# pip keeps an sdist only after building its metadata, which needs hatchling, hence the private venv.
# The data is an optional input for experiments and demos: tests never read it. Nothing is committed.
# Environment: SOFTALIGN_CACHE overrides the cache folder (default: <repo>/.cache); PYTHON the interpreter.
set -euo pipefail

version=0.9.5
member=dpo_en_demo.json
want_sha256=b949be2421cfa62744afcf1b479f95b299d643d1a4c1c97d1341b314a1aa5cb3

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SOFTALIGN_CACHE:-$root/.cache}
python=${PYTHON:-python3}
out_dir=$cache/data
out=$out_dir/$member

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$out" ] && [ "$(sha256_of "$out")" = "$want_sha256" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out_dir"
work=$(mktemp -d "$cache/fetch-pairs.XXXXXX")
trap 'rm -rf "$work"' EXIT

venv=$cache/venv-fetch
if [ ! -x "$venv/bin/pip" ]; then
  echo "fetch-pairs: creating $venv" >&2
  "$python" -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check hatchling >&2
echo "fetch-pairs: downloading the llamafactory==$version sdist" >&2
"$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  --no-build-isolation -d "$work" "llamafactory==$version" >&2

sdist=$(find "$work" -maxdepth 1 -name "llamafactory-$version.tar.gz" | head -n 1)
[ -n "$sdist" ] || { echo "fetch-pairs: error: no llamafactory-$version.tar.gz in $work" >&2; exit 1; }
tar -xzf "$sdist" -C "$work" "llamafactory-$version/data/$member"

got=$(sha256_of "$work/llamafactory-$version/data/$member")
if [ "$got" != "$want_sha256" ]; then
  echo "fetch-pairs: error: sha256 of $member is $got, expected $want_sha256" >&2
  exit 1
fi
# Same file system as the destination, so the rename is atomic: no half-written file is left.
mv "$work/llamafactory-$version/data/$member" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
