#!/usr/bin/env bash
# The suite under contention: proof that it does not flake.
#
#   tests/stress.sh [SUITE_RUNS [BROWSER_RUNS]]      (defaults: 3 and 3)
#
# 1. The whole suite SUITE_RUNS times in a row (trial --random=0: a new order
#    each time) with one core kept busy by a spinning Python.
# 2. The browser tests BROWSER_RUNS times in a row beside another headless
#    Chromium spinning a page, a core-hog and a process that keeps ~1 GiB of
#    memory warm (the contention that once made a test fail: CPU and memory
#    together).
# Every run's log is kept in test-artifacts/stress/; the last line says how
# many runs failed, and the exit code is non-zero if any did.
#
# PYTHON picks the interpreter (default: the tox env's, else python3);
# CHROMIUM the browser (default /usr/bin/chromium).
set -uo pipefail
cd "$(dirname "$0")/.."

suite_runs=${1:-3}
browser_runs=${2:-3}
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .tox/tests/bin/python ]; then python=.tox/tests/bin/python; else python=python3; fi
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
logs=test-artifacts/stress
mkdir -p "$logs"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "${profile:-}"
}
trap cleanup EXIT

hog_cpu() { python3 -c 'while True: pass' & pids+=($!); }
hog_memory() {
  python3 -c '
import time
block = bytearray(1 << 30)
while True:
    for i in range(0, len(block), 4096):
        block[i] = (block[i] + 1) & 0xFF
    time.sleep(0.05)
' & pids+=($!)
}

failed=0
total=0
run() {  # run NAME ARGS...: one trial run, logged; counts failures
  local name=$1; shift
  total=$((total + 1))
  local started=$SECONDS
  if "$python" -m twisted.trial --temp-directory="$logs/_trial_temp_$name" --random=0 "$@" >"$logs/$name.log" 2>&1; then
    echo "$name: ok in $((SECONDS - started)) s ($(grep -E '^(PASSED|FAILED)' "$logs/$name.log" | tail -1))"
  else
    failed=$((failed + 1))
    echo "$name: FAILED in $((SECONDS - started)) s, see $logs/$name.log"
    grep -E '^(FAILED|\[FAIL\]|\[ERROR\])|^tests\.' "$logs/$name.log" | tail -20
  fi
}

echo "the whole suite, $suite_runs times, one core kept busy ($python)"
hog_cpu
for i in $(seq 1 "$suite_runs"); do run "suite-$i" tests; done
cleanup
pids=()

if [ "$browser_runs" -gt 0 ] && [ -x "$chromium" ]; then
  echo "the browser tests, $browser_runs times, beside another Chromium, a busy core and 1 GiB of warm memory"
  profile=$(mktemp -d)
  "$chromium" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --remote-debugging-port=0 \
    'data:text/html,<canvas id=c width=1600 height=1200></canvas><script>const x=c.getContext("2d");(function f(){for(let i=0;i<2e4;i++){x.fillStyle=`hsl(${i%360},50%,50%)`;x.fillRect(i%1600,i%1200,40,40)}requestAnimationFrame(f)})()</script>' \
    >/dev/null 2>&1 & pids+=($!)
  hog_cpu
  hog_memory
  for i in $(seq 1 "$browser_runs"); do run "browser-$i" tests.test_ui_browser tests.test_ui_page; done
elif [ "$browser_runs" -gt 0 ]; then
  echo "no Chromium at $chromium: the browser runs are skipped"
fi

echo "stress: $total runs, $failed failed"
[ "$failed" -eq 0 ]
