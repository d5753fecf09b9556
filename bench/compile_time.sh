#!/usr/bin/env bash
# Compile time is a feature of a header-only library. Prints JSON lines:
#  - time and peak memory to compile a minimal program that includes the umbrella header and
#    runs one backward pass (tests/consumer/main.cpp) at -O2, with g++ and clang++;
#  - with --suite, the wall time of a clean build of the test suite with 2 jobs.
# Needs GNU time (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for cxx in g++ clang++; do
  command -v "$cxx" >/dev/null || continue
  # The flags a CMake consumer of tensortape::tensortape gets (with zlib found).
  /usr/bin/time -f '%e %M' -o "$out/time" "$cxx" -std=c++20 -O2 -march=native -DTENSORTAPE_HAS_ZLIB=1 -Iinclude \
    tests/consumer/main.cpp -o "$out/one_backward" -pthread -lz
  "$out/one_backward"
  read -r secs kb < "$out/time"
  echo "{\"bench\": \"compile_one_backward\", \"compiler\": \"$cxx\", \"seconds\": $secs, \"peak_MB\": $((kb / 1024)), \"target_seconds\": 5, \"target_MB\": 600}"
done

if [[ "${1:-}" == "--suite" ]]; then
  cmake -S . -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DTENSORTAPE_BUILD_EXAMPLES=OFF -DTENSORTAPE_BUILD_BENCH=OFF >/dev/null
  start=$(date +%s%N)
  cmake --build "$out/build" -j2 >/dev/null
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  echo "{\"bench\": \"test_suite_clean_build\", \"jobs\": 2, \"seconds\": $((ms / 1000)).$(printf '%03d' $((ms % 1000)))}"
fi
