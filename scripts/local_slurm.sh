#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian's slurmctld, slurmd, slurm-client, munge), for
# testing launcher=submitit_slurm against a real scheduler (tests/test_slurm.py). Needs root and,
# where SLURM is not installed, apt-get; idempotent. Accounting is off (no slurmdbd), so `sacct`
# fails, as on many small clusters: dropbench must not need it.
#   scripts/local_slurm.sh          # install if missing, configure, start; prints the partition
#   scripts/local_slurm.sh stop     # stop the daemons (slurmd, slurmctld, munged)
# Tuned for tests, not production: a killed job's processes get KillWait=5 s (default 30) to exit,
# a requeued job may start again after cred_expire=10 s (default 120), and the scheduler looks at
# pending jobs every 2 s (default 60). SLURM checks time limits every 30 s whatever the config.
# The node offers at least 4 CPUs, more than a small machine has (config_overrides): the tests
# hold jobs that mostly sleep, and one held until its time limit must not starve the others.
set -euo pipefail
PIDS=(/var/run/slurm/slurmd.pid /var/run/slurm/slurmctld.pid /run/munge/munged.pid)
if [ "${1:-}" = stop ]; then
  for p in "${PIDS[@]}"; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "local_slurm.sh: needs root (it installs and starts system daemons)" >&2
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  command -v apt-get >/dev/null || { echo "local_slurm.sh: SLURM is not installed and there is no apt-get to install it" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
H=$(hostname -s)
CPUS=$(( $(nproc) > 4 ? $(nproc) : 4 ))
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/run/slurm
[ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
CONF=$(cat <<CONF
ClusterName=local
SlurmctldHost=$H
MpiDefault=none
ProctrackType=proctrack/linuxproc
ReturnToService=2
SlurmctldPidFile=/var/run/slurm/slurmctld.pid
SlurmdPidFile=/var/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
SlurmUser=root
StateSaveLocation=/var/spool/slurmctld
SwitchType=switch/none
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
KillWait=5
AuthInfo=cred_expire=10
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$H CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
)
changed=0
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$CONF" ]; then
  printf '%s\n' "$CONF" > /etc/slurm/slurm.conf
  changed=1
fi
pgrep -x munged >/dev/null || /usr/sbin/munged --force 2>/dev/null
if [ "$changed" = 1 ]; then  # daemons started with another config read it again only when restarted
  for d in slurmd slurmctld; do
    p=/var/run/slurm/$d.pid
    if [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; then
      for _ in $(seq 30); do pgrep -x "$d" >/dev/null || break; sleep 0.5; done
    fi
  done
fi
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|allocated' && break; sleep 1; done
timeout 60 srun -N1 true
echo "local SLURM up: partition debug, node $H, $CPUS CPUs (logs in /var/log/slurm)"
