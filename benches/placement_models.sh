#!/usr/bin/env bash
# BENCHMARKS.md §7: learners for `stampede placement` compared on the law's runs. Builds the
# standalone project benches/placement-models (not part of the workspace) and prints a table.
set -euo pipefail
cd "$(dirname "$0")/placement-models"
cargo build --release --quiet
./target/release/placement-models
