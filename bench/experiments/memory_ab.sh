#!/bin/sh
# Memory per idle connection, base against this tree in one session: compare.py's conns (2,000 idle) and
# idle10k (10,000) through Redis, the naive peer beside them, 3 rounds alternating which tree goes first;
# then a tracemalloc census of each tree (bench/experiments/idle_census.py) and CPU per delivery
# (bench/experiments/issue25_cpu_ab.py, Redis). From the project root, under the benchmark lock:
#
#   git archive d58e830 | tar -x -C /tmp/base24m; git archive HEAD | tar -x -C /tmp/head24m
#   flock /tmp/bench.lock sh bench/experiments/memory_ab.sh /tmp/base24m /tmp/head24m
#
# $SHARED: the shared harness with its node_modules (bench/README.md). Results: bench/results/issue-24-memory*.
set -e
BASE=$1
HEAD=$2
HERE=$(pwd)
PY=$HERE/.venv/bin/python
OUT=$HERE/bench/results
# Each tree's run.py runs its own .venv/bin/python (a link to this one): the JSON lines record it relatively.
ours() {
    (cd "$HEAD" && PY=.venv/bin/python "$PY" bench/run.py --rounds 1 --scenarios conns,idle10k --servers naive,redis --all-pairs \
        --shared "$SHARED" --out "$OUT/issue-24-memory.jsonl")
}
base() {
    (cd "$BASE" && PY=.venv/bin/python "$PY" bench/run.py --rounds 1 --scenarios conns,idle10k --servers redis \
        --shared "$SHARED" --out "$OUT/issue-24-memory-base.jsonl")
}
for round in 1 2 3; do
    if [ $((round % 2)) -eq 1 ]; then base; ours; else ours; base; fi
done
"$PY" bench/experiments/idle_census.py --root "$HEAD" --top 40 > "$OUT/issue-24-census-after.txt" 2>&1
"$PY" bench/experiments/idle_census.py --root "$BASE" --top 40 > "$OUT/issue-24-census-before.txt" 2>&1
"$PY" bench/experiments/issue25_cpu_ab.py "$BASE" "$HEAD" --bus redis --rounds 4 > "$OUT/issue-24-cpu-ab.txt" 2>&1
