#!/usr/bin/env bash
# Installs what Metrobus's build and tests need on a fresh Debian bookworm
# machine, as root. Idempotent and quick when everything is there already:
# apt-get runs only for missing packages, pip only when an import fails.
#
#   apt: libclang-dev (bindgen for RocksDB), cmake (librdkafka), kcat,
#        prometheus (promtool, to check the metrics endpoint), python3-venv
#   venv at $TEST_VENV (default $HOME/.cache/metrobus-venv):
#        kafka-python, confluent-kafka, pytest
#
# Usage: scripts/install-test-tools.sh     (prints the venv's python at the end)
set -euo pipefail

# Not METROBUS_*: the broker refuses METROBUS_ variables that name no setting.
venv=${TEST_VENV:-$HOME/.cache/metrobus-venv}
python=${PYTHON:-python3}
export DEBIAN_FRONTEND=noninteractive

say() { echo "install-test-tools: $*" >&2; }
die() { say "error: $*"; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

# package:command pairs; a package counts as present if dpkg has it or its
# command is on PATH (installed some other way).
wanted=(libclang-dev: cmake:cmake kcat:kcat prometheus:prometheus python3-venv:)
missing=()
for pair in "${wanted[@]}"; do
    package=${pair%%:*}
    command=${pair#*:}
    if installed "$package" || { [[ -n $command ]] && command -v "$command" >/dev/null; }; then
        continue
    fi
    missing+=("$package")
done

if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || die "need root to install ${missing[*]}"
    say "installing with apt-get: ${missing[*]}"
    apt-get update -q || die "apt-get update failed"
    # No recommends: prometheus would pull in exporters and their services.
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
    for package in "${missing[@]}"; do
        installed "$package" || die "$package is still not installed"
    done
else
    say "apt packages present: libclang-dev cmake kcat prometheus python3-venv"
fi

python_modules_ok() {
    [[ -x $venv/bin/python ]] \
        && "$venv/bin/python" -c 'import kafka, confluent_kafka, pytest' 2>/dev/null
}

if python_modules_ok; then
    say "python venv ready: $venv (kafka-python, confluent-kafka, pytest)"
else
    if [[ ! -x $venv/bin/python ]]; then
        say "creating python venv $venv with $($python --version 2>&1)"
        "$python" -m venv "$venv" || die "python3 -m venv $venv failed"
    fi
    say "installing into $venv: kafka-python confluent-kafka pytest"
    "$venv/bin/python" -m pip install -q kafka-python confluent-kafka pytest \
        || die "pip install failed"
    python_modules_ok || die "kafka-python, confluent-kafka or pytest still not importable in $venv"
fi

echo "$venv/bin/python"
