#!/bin/sh
# Regenerate the chart's CRD copies (byte-identical to the repository's crds/*.yaml) and every other
# generated contract file. This is `python -m backtest_kit_operator.generate` run from the repository
# root; pass --check to only verify. PYTHON picks the interpreter (default: python3).
set -eu
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python3}" -m backtest_kit_operator.generate "$@"
