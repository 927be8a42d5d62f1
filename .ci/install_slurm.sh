#!/usr/bin/env bash
# Install a single-node Slurm (controller, node daemon, client tools) and MUNGE for tests/test_slurm.py.
# Idempotent and non-interactive; installs only: nothing is configured or started here
# (tests/slurm/cluster.py writes slurm.conf and starts/stops the daemons itself).
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_slurm: already installed: ${packages[*]}"
    exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101 keeps the package scripts from starting the daemons we just installed.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
    "${sudo_cmd[@]}" chmod 755 "$policy"
    created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && "${sudo_cmd[@]}" rm -f "$policy"' EXIT

"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
echo "install_slurm: installed: ${missing[*]}"
