#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing lazyhasty's SLURM path against sbatch.
#
#   scripts/slurm-local.sh start    install slurm-wlm + munge (root + apt) if needed, write a slurm.conf naming this
#                                   host, start munged, slurmctld and slurmd, wait until the node is idle
#   scripts/slurm-local.sh stop     stop the daemons this script started (never a cluster it did not start)
#   scripts/slurm-local.sh status   sinfo, and whether this script started the cluster
#
# One partition, "debug". Accounting is off (sacct answers nothing). Needs root. The files it writes carry the
# marker below; a slurm.conf without it is never overwritten, and `stop` touches only what `start` recorded.
set -euo pipefail

STATE=/run/lazyhasty-slurm          # what this script started (pids), so that stop never touches anything else
CONF=/etc/slurm/slurm.conf
MARK="# written by lazyhasty scripts/slurm-local.sh"
PARTITION=debug

die() { echo "slurm-local: $*" >&2; exit 1; }
ours() { [ -f "$STATE/started" ]; }

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null && return
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed, and this is not root with apt"
  echo "slurm-local: installing slurm-wlm and munge ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge) \
    >/tmp/lazyhasty-slurm-apt.log 2>&1 || die "apt-get failed (see /tmp/lazyhasty-slurm-apt.log)"
}

write_conf() {
  local node host
  host=$(hostname -s)
  node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=...
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching it"
  fi
  cat >"$CONF" <<EOF
$MARK
ClusterName=lazyhasty-local
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" = 0 ] || die "start needs root"
  if ours && sinfo -h >/dev/null 2>&1; then
    # jobs an earlier, killed session left on this test cluster would hold its CPUs: cancel them
    if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
      echo "slurm-local: cancelling jobs left from an earlier session:"; squeue
      scancel --full --quiet -u "$(id -un)" 2>/dev/null || true
      for _ in $(seq 1 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 1; done
    fi
    echo "slurm-local: already running (started by this script)"; return
  fi
  if ! ours && command -v sinfo >/dev/null && sinfo -h >/dev/null 2>&1; then
    die "a SLURM cluster this script did not start is already answering; not touching it"
  fi
  install
  mkdir -p "$STATE"
  write_conf
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --pid-file="/run/munge/munged.pid"
    cp /run/munge/munged.pid "$STATE/munged.pid"
  fi
  touch "$STATE/started"
  /usr/sbin/slurmctld -i   # -i: ignore state left by an earlier cluster
  /usr/sbin/slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -p "$PARTITION" -o %t 2>/dev/null | grep -qx idle; then
      echo "slurm-local: node $(hostname -s) idle in partition $PARTITION"
      return
    fi
    sleep 1
  done
  die "the node did not become idle within 60 s (see /var/log/slurm/)"
}

stop() {
  ours || { echo "slurm-local: no cluster started by this script"; return; }
  scancel --full --quiet -u "$(id -un)" 2>/dev/null || true
  for d in slurmd slurmctld munged; do
    if [ -f "$STATE/$d.pid" ]; then
      kill "$(cat "$STATE/$d.pid")" 2>/dev/null || true
    fi
  done
  sleep 1
  rm -rf "$STATE"
  echo "slurm-local: stopped"
}

status() {
  if ours; then echo "slurm-local: started by this script"; else echo "slurm-local: not started by this script"; fi
  sinfo 2>/dev/null || echo "slurm-local: no SLURM controller answers"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
