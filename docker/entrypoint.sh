#!/usr/bin/env bash
# Entry point of mirage-ae: record the environment, then run the command (default: make all).
#
# The record (scripts/run_all_parts.py env: GPUs as nvidia-smi lists them, driver, library
# versions, pip freeze, the optional baselines that installed, the commit the image was built
# from) goes to results/environment/<time>.json, which `make all` mounts from the host.
# MIRAGE_RECORD=0 skips it, MIRAGE_ENV_DIR puts it elsewhere; a record that cannot be written
# is reported and the command still runs. MIRAGE_HOME is the checkout inside the image.
set -euo pipefail

cd "${MIRAGE_HOME:-/workspace}"
if [[ ${MIRAGE_RECORD:-1} != 0 ]]; then
    out="${MIRAGE_ENV_DIR:-results/environment}/$(date -u +%Y%m%dT%H%M%SZ).json"
    if python -m scripts.run_all_parts env --out "$out" > /dev/null; then
        export MIRAGE_ENV_RECORD=$out
        echo "entrypoint: environment recorded in $out" >&2
    else
        echo "entrypoint: could not record the environment (is results/ writable?); going on" >&2
    fi
fi
if [[ $# -eq 0 ]]; then
    set -- make all
fi
exec "$@"
