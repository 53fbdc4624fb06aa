#!/usr/bin/env bash
# Scratch copies for the experiments, outside the repository (from the project root):
#   bench/experiments/prepare.sh [COMMIT]      default HEAD
# /tmp/chatsnap             git archive of COMMIT (the code measured; the tree may be under edit)
# /tmp/chatproto-fast       + proto-direct-write.diff            (send_frame writes to the IOStream)
# /tmp/chatproto-fast3      + proto-direct-write-watermark.diff  (the same, one flush callback at a time)
# /tmp/chatproto-quiet      + proto-log-level-warning.diff       (info lines filtered out)
set -euo pipefail
commit=${1:-HEAD}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf /tmp/chatsnap /tmp/chatproto-fast /tmp/chatproto-fast3 /tmp/chatproto-quiet
mkdir -p /tmp/chatsnap
git archive "$commit" | tar -x -C /tmp/chatsnap
for pair in fast:proto-direct-write fast3:proto-direct-write-watermark quiet:proto-log-level-warning; do
  dir=/tmp/chatproto-${pair%%:*}
  cp -a /tmp/chatsnap "$dir"
  patch -s -d "$dir" -p1 < "$here/${pair#*:}.diff"
done
echo "prepared from $(git rev-parse "$commit")"
