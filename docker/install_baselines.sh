#!/usr/bin/env bash
# Install the image's optional baselines, one group at a time, and record what installed.
#
#   docker/install_baselines.sh LIST CONSTRAINTS RECORD [GROUP ...]
#
# LIST is docker/requirements-baselines.txt ("<group>: <pip arguments>" per line; a group may
# span several lines, run in order, and stops at its first failing line). CONSTRAINTS is the
# merged core pins (docker/pins.py), passed to every pip call so that no baseline moves torch,
# triton or numpy. GROUPs select groups (default: all in LIST; "none" installs nothing). RECORD
# gets one line per group: "<group> installed <pins>" or "<group> FAILED (<pip's last line>)" or
# "<group> not selected". A failed group does not fail the build: its baseline then reports
# "not available: <reason>" in every results table. PIP overrides the pip command (tests).
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 LIST CONSTRAINTS RECORD [GROUP ...]" >&2
    exit 2
fi
list=$1 constraints=$2 record=$3
shift 3
read -r -a pip <<< "${PIP:-python -m pip}"

groups=()
while IFS= read -r line; do
    line=${line%%#*}
    [[ $line =~ ^[[:space:]]*([A-Za-z0-9_.-]+):[[:space:]]*(.+)$ ]] || continue
    name=${BASH_REMATCH[1]}
    [[ " ${groups[*]-} " == *" $name "* ]] || groups+=("$name")
done < "$list"

selected=("$@")
if [[ ${#selected[@]} -eq 0 ]]; then
    selected=("${groups[@]}")
fi
for want in "${selected[@]}"; do
    if [[ $want != none && " ${groups[*]} " != *" $want "* ]]; then
        echo "install_baselines: no group '$want' in $list (groups: ${groups[*]})" >&2
        exit 2
    fi
done

mkdir -p "$(dirname "$record")"
: > "$record"
log=$(mktemp)
for name in "${groups[@]}"; do
    if [[ " ${selected[*]} " != *" $name "* ]]; then
        echo "$name not selected" >> "$record"
        continue
    fi
    status=installed pins=()
    while IFS= read -r line; do
        line=${line%%#*}
        [[ $line =~ ^[[:space:]]*([A-Za-z0-9_.-]+):[[:space:]]*(.+)$ ]] || continue
        [[ ${BASH_REMATCH[1]} == "$name" ]] || continue
        read -r -a args <<< "${BASH_REMATCH[2]}"
        for a in "${args[@]}"; do
            [[ $a == *==* ]] && pins+=("$a")
        done
        echo "install_baselines: $name: ${pip[*]} install ${args[*]}"
        if ! "${pip[@]}" install --no-cache-dir -c "$constraints" "${args[@]}" > "$log" 2>&1; then
            tail -n 20 "$log"
            last=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)
            status="FAILED (${last:-pip failed})"
            break
        fi
    done < "$list"
    if [[ $status == installed ]]; then
        echo "$name installed ${pins[*]}" >> "$record"
    else
        echo "$name $status" >> "$record"
    fi
    echo "install_baselines: $name: $status"
done
rm -f "$log"
