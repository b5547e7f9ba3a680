#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine (localhost), for the tests marked `slurm`:
#
#   tools/slurm-local.sh up       install (Debian: slurmctld slurmd munge slurm-client) if missing,
#                                 write /etc/slurm/slurm.conf for this host, start munged, slurmctld, slurmd
#   tools/slurm-local.sh down     cancel every job, stop the daemons
#   tools/slurm-local.sh status   sinfo and squeue
#
# Runs as root (or with sudo). State and logs go to $SLURM_LOCAL_DIR (default /var/tmp/vgsweep-slurm).
set -euo pipefail
CMD=${1:-up}
DIR=${SLURM_LOCAL_DIR:-/var/tmp/vgsweep-slurm}
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)

up() {
  if ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurmctld slurmd munge slurm-client >/dev/null \
      || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurmctld slurmd munge slurm-client >/dev/null; }
  fi
  $SUDO mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" /run/munge /var/log/munge /var/lib/munge /etc/munge /etc/slurm
  if [ ! -s /etc/munge/munge.key ]; then
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  $SUDO chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  $SUDO chmod 400 /etc/munge/munge.key
  $SUDO chmod 755 /run/munge
  if ! pgrep -x munged >/dev/null; then
    $SUDO runuser -u munge -- /usr/sbin/munged
  fi
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  $SUDO tee /etc/slurm/slurm.conf >/dev/null <<EOF
# Written by vgsweep's tools/slurm-local.sh: one node, this host, for tests.
ClusterName=vgsweep
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MpiDefault=none
JobRequeue=1
MinJobAge=600
# SIGTERM to SIGKILL (a real cluster's default: 30 s); a pack job ends its runs KILLED in between
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  pgrep -x slurmctld >/dev/null || $SUDO /usr/sbin/slurmctld
  pgrep -x slurmd >/dev/null || $SUDO /usr/sbin/slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      sinfo
      return 0
    fi
    $SUDO scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "slurm did not come up; logs in $DIR/log" >&2
  tail -20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
  return 1
}

down() {
  scancel --user="$(id -un)" 2>/dev/null || true
  $SUDO pkill -x slurmd 2>/dev/null || true
  $SUDO pkill -x slurmctld 2>/dev/null || true
  for _ in $(seq 1 30); do  # gone, so that `up` starts fresh daemons
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || return 0
    sleep 0.5
  done
}

case $CMD in
  up) up ;;
  down) down ;;
  status) sinfo; squeue ;;
  *) echo "usage: $0 up | down | status" >&2; exit 2 ;;
esac
