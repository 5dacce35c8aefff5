#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for the tests (tests/core/test_slurm.py) and for trying
# the SLURM profile on a workstation. Debian's slurm-wlm + munge, no accounting database.
#
#   scripts/local-slurm.sh install        # apt-get install slurm-wlm munge, when sbatch is missing
#   scripts/local-slurm.sh start DIR      # config, state and logs in DIR; prints SLURM_CONF=...
#   scripts/local-slurm.sh stop DIR
#
# Then `export SLURM_CONF=DIR/slurm.conf` and use sbatch, squeue, scancel, or
# `snakemake --workflow-profile workflow/profiles/slurm`. Needs root (slurmd starts jobs as
# their user; munged runs as root with --force). Partition `local`: this machine's CPUs and
# most of its memory; the controller keeps finished jobs for 10 minutes (MinJobAge), which is
# what lets Snakemake's SLURM plugin follow jobs with `squeue` when there is no `sacct`.
set -euo pipefail

cmd=${1:-}
dir=${2:-}

die() { echo "local-slurm: $*" >&2; exit 2; }

install() {
    if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || die "installing slurm-wlm and munge needs root (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; } \
        || die "apt-get install slurm-wlm munge failed"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    [ -n "$dir" ] || die "usage: $0 start DIR"
    [ "$(id -u)" = 0 ] || die "starting slurmd needs root"
    install
    mkdir -p "$dir"/{state,spool,munge}
    dir=$(cd "$dir" && pwd)

    # munge: a key of our own and a socket in DIR, so nothing system-wide is touched.
    local socket="$dir/munge/munge.socket"
    if [ ! -f "$dir/munge/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$dir/munge/munge.key"
    fi
    munged --force --key-file="$dir/munge/munge.key" --socket="$socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed"

    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))  # MiB, 3/4 of it
    cat > "$dir/slurm.conf" <<EOF
# matchbench local-slurm (scripts/local-slurm.sh): a one-node cluster on loopback
ClusterName=matchbench-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    # Job steps read the default path: Snakemake's jobstep plugin drops SLURM_* variables
    # (SLURM_CONF included) before its inner srun. Link it to ours, never over a real one.
    local etc=/etc/slurm/slurm.conf
    if [ -e "$etc" ] && ! grep -q '^# matchbench local-slurm' "$etc" 2>/dev/null; then
        die "$etc exists and is not a local-slurm config; not replacing it"
    fi
    mkdir -p /etc/slurm
    ln -sfn "$SLURM_CONF" "$etc"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF" -N localhost
    for _ in $(seq 1 100); do
        if sinfo -h -N -o '%t' 2>/dev/null | grep -qx 'idle'; then
            echo "SLURM_CONF=$SLURM_CONF"
            return
        fi
        sleep 0.2
    done
    die "the node did not come up idle; see $dir/slurmctld.log and $dir/slurmd.log"
}

stop() {
    [ -n "$dir" ] || die "usage: $0 stop DIR"
    dir=$(cd "$dir" && pwd)
    for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if [ -f "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
    done
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$dir/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
}

case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
