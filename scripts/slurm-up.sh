#!/usr/bin/env bash
# A single-node Slurm on this machine for the Slurm backend and its tests:
# installs slurm-wlm + munge if missing, writes /etc/slurm/slurm.conf and cgroup.conf,
# starts munged, slurmctld and slurmd. Idempotent: exits 0 when the node is already up.
# Needs root. Usage: bash scripts/slurm-up.sh
set -euo pipefail

node_up() { command -v sinfo >/dev/null 2>&1 && sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

if node_up; then
  echo "slurm already running"; sinfo; exit 0
fi
if [ "$(id -u)" != 0 ]; then echo "slurm-up.sh: needs root (apt-get, daemons)" >&2; exit 1; fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
fi

# --- munge (authentication between the daemons and the client commands)
if [ ! -f /etc/munge/munge.key ]; then
  mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -u munge -x munged >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
fi

# --- slurm.conf: one node (this host), one partition, no accounting
host=$(hostname -s)
mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
mem=${mem:-1024}
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire s (default 120): short, for the requeue tests
AuthInfo=cred_expire=10
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
ReturnToService=2
SlurmdTimeout=300
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/cgroup.conf <<CONF
IgnoreSystemd=yes
CONF

pgrep -x slurmctld >/dev/null 2>&1 || slurmctld
pgrep -x slurmd >/dev/null 2>&1 || slurmd

for _ in $(seq 1 30); do
  if node_up; then sinfo; exit 0; fi
  # a node left down/drained by an earlier run: bring it back
  scontrol update NodeName="${host}" State=RESUME >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm-up.sh: the node did not come up; see /var/log/slurm/" >&2
sinfo || true
exit 1
