#!/usr/bin/env bash
# Before/after of the optimisations: the same scenario on the naive peer and on this server's Redis bus
# at several commits, in one session (interleaved, order reversed every other round). From the project root:
#
#   bench/ab.sh OUT.jsonl ROUNDS SCENARIO 'COMPARE FLAGS' COMMIT...
#   e.g. bench/ab.sh bench/results/ab-rooms40.jsonl 3 rooms '--rates 40' 633b15d 1265dc7 HEAD
#
# Each commit is exported with git archive to /tmp/ab/<commit> and run there with .venv/bin/python;
# its lines are named redis@<commit>. Summarise with: .venv/bin/python bench/ab_summary.py OUT.jsonl
set -euo pipefail
out=${1:?usage: bench/ab.sh OUT ROUNDS SCENARIO FLAGS COMMIT...}; rounds=$2; scenario=$3; flags=$4; shift 4
repo=$PWD
py=$repo/.venv/bin/python
shared=${SHARED:-$repo/../shared/bench}
unlimited="--rate-limit 0 --client-rate-limit 0 --join-rate 0 --room-create-rate 0 --max-connections-per-client 100000 --max-connections 20000"
runs=(naive)
for commit in "$@"; do
  sha=$(git rev-parse --short "$commit")
  rm -rf "/tmp/ab/$sha" && mkdir -p "/tmp/ab/$sha"
  git archive "$commit" | tar -x -C "/tmp/ab/$sha"
  runs+=("$sha")
done
one() { # run-name
  local cmd name=$1 noredis=""
  if [[ $name == naive ]]; then
    cmd="$py $shared/peers/tornado_minimal.py {port}"; noredis=--no-redis; dir=$repo
  else
    cmd="$py server.py --port {port} --redis-url redis://127.0.0.1:{redis_port}/0 $unlimited"; dir=/tmp/ab/$name; name=redis@$name
  fi
  echo "== $(date -u +%H:%M:%S) round $r $scenario $name (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # shellcheck disable=SC2086
  (cd "$dir" && "$py" "$shared/compare.py" --name "$name" --port 8861 --redis-port 6399 $noredis \
      --scenarios "$scenario" $flags --server "$cmd" --out "$repo/$out" >/dev/null)
}
for r in $(seq 1 "$rounds"); do
  order=("${runs[@]}")
  if (( r % 2 == 0 )); then order=(); for ((i=${#runs[@]}-1; i>=0; i--)); do order+=("${runs[i]}"); done; fi
  for run in "${order[@]}"; do one "$run"; done
done
