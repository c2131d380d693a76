#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1, for tests (tests/slurm.rs) and for trying
# scripts/slurm-profile.sh without a real cluster.
#
#   scripts/slurm-local.sh start DIR     # munged + slurmctld + slurmd, all state under DIR
#   eval "$(scripts/slurm-local.sh env DIR)"   # export SLURM_CONF=DIR/slurm.conf
#   sbatch --array=1-4 ...; squeue; sinfo
#   scripts/slurm-local.sh stop DIR      # stop the daemons by their recorded PIDs
#
# Everything lives under DIR: a fresh munge key (0400) and munged with its own socket, PID, log
# and seed files; slurm.conf (one node: this host's CPUs from nproc and memory from
# /proc/meminfo, NodeAddr=127.0.0.1, ports 16817/16818, proctrack/linuxproc, task/none, no
# accounting, requeue allowed, ReturnToService=2); slurmctld's state, slurmd's spool, the logs and
# the PID files. Nothing under /etc is read or written, and the ports are uncommon, so it runs
# beside a real installation. Run as root: slurmd launches the jobs, and munged is started with
# --force to run as root. Slurm 22.05 (Debian 12's slurm-wlm) is the tested version; when
# slurmctld is missing, `start` installs slurm-wlm and munge with apt-get.
#
# SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT override the ports [16817 / 16818];
# SLURM_LOCAL_TIMEOUT the seconds `start` waits for the node to come up idle [60].
set -euo pipefail
# The daemons live in /usr/sbin, which a non-login root shell may lack.
export PATH=$PATH:/usr/sbin:/sbin

usage() {
  echo "usage: $0 start DIR | stop DIR | env DIR | status DIR" >&2
  exit 2
}
(( $# == 2 )) || usage
cmd=$1
[[ $cmd == start ]] && mkdir -p "$2"
[[ -d "$2" ]] || { echo "slurm-local: $2 is not a directory" >&2; exit 1; }
DIR=$(cd "$2" && pwd -P)
CONF=$DIR/slurm.conf
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-16817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-16818}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
NODE=tokenq-local
PARTITION=local
PIDS=(slurmd slurmctld munged)   # stop order: the reverse of start

pidfile() { echo "$DIR/$1.pid"; }
# The PID recorded for a daemon if that process is still alive, else nothing.
alive_pid() {
  local f pid
  f=$(pidfile "$1")
  [[ -s "$f" ]] || return 1
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

log_tails() {
  local f
  for f in "$DIR"/log/munged.log "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log \
           "$DIR"/log/slurmctld.stderr "$DIR"/log/slurmd.stderr "$DIR"/log/munged.stderr; do
    [[ -s "$f" ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}

die() {
  echo "slurm-local: $*" >&2
  log_tails
  exit 1
}

install_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  echo "slurm-local: slurmctld/slurmd/munged not found: installing slurm-wlm and munge (apt-get)" >&2
  command -v apt-get >/dev/null || die "no apt-get: install Slurm (slurm-wlm) and munge by hand"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
  # The packages may start system-wide daemons on their default ports/socket; ours do not
  # use them, so they are left alone.
}

write_conf() {
  local cpus mem_mb host
  cpus=$(nproc)
  # RealMemory in MiB, a little below MemTotal so that slurmd never finds less than configured.
  mem_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.95 }' /proc/meminfo)
  host=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)
  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a single-node test cluster, everything under $DIR.
ClusterName=tokenq-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$DIR/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  : >"$DIR/plugstack.conf"
}

start_munge() {
  local key=$DIR/munge/munge.key
  mkdir -p "$DIR/munge" "$DIR/log"
  chmod 0700 "$DIR/munge"
  if [[ ! -s "$key" ]]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$key" --force
    else
      dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
  fi
  chmod 0400 "$key"
  rm -f "$DIR/munge/munge.socket" "$DIR/munge/munge.socket.lock"
  # -F: stay in the foreground, so that $! is munged's own PID.
  nohup munged -F --force --socket="$DIR/munge/munge.socket" --key-file="$key" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" </dev/null >"$DIR/log/munged.stderr" 2>&1 &
  echo $! >"$(pidfile munged)"
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -S "$DIR/munge/munge.socket" ]] && return 0
    alive_pid munged >/dev/null || die "munged exited at start"
    sleep 0.1
  done
  die "munged did not create its socket $DIR/munge/munge.socket in 5 s"
}

start() {
  [[ $(id -u) == 0 ]] || die "run as root (slurmd launches the jobs; munged and slurmctld run as root here)"
  install_slurm
  if alive_pid slurmctld >/dev/null || alive_pid slurmd >/dev/null || alive_pid munged >/dev/null; then
    echo "slurm-local: already running in $DIR (stop it first: $0 stop $DIR)" >&2
    exit 1
  fi
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  write_conf
  start_munge
  export SLURM_CONF=$CONF
  # -D: foreground, so that $! is the daemon's PID; -c: no jobs from an earlier start.
  nohup slurmctld -D -c -f "$CONF" </dev/null >"$DIR/log/slurmctld.stderr" 2>&1 &
  echo $! >"$(pidfile slurmctld)"
  nohup slurmd -D -N "$NODE" -f "$CONF" </dev/null >"$DIR/log/slurmd.stderr" 2>&1 &
  echo $! >"$(pidfile slurmd)"
  local t0=$SECONDS state=""
  while (( SECONDS - t0 < TIMEOUT )); do
    alive_pid slurmctld >/dev/null || die "slurmctld exited at start"
    alive_pid slurmd >/dev/null || die "slurmd exited at start"
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    if [[ "$state" == idle* ]]; then
      echo "slurm-local: node $NODE idle ($(nproc) CPUs) on 127.0.0.1:$CTLD_PORT; SLURM_CONF=$CONF" >&2
      return 0
    fi
    sleep 0.5
  done
  die "node $NODE not idle after ${TIMEOUT} s (sinfo says: ${state:-nothing})"
}

stop() {
  local name pid i
  if alive_pid slurmctld >/dev/null; then
    # Cancel what is left, so that no job step outlives the cluster.
    SLURM_CONF=$CONF timeout 10 scancel --partition="$PARTITION" >/dev/null 2>&1 || true
  fi
  for name in "${PIDS[@]}"; do
    pid=$(alive_pid "$name") || { rm -f "$(pidfile "$name")"; continue; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-local: $name (pid $pid) ignored SIGTERM for 10 s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
    rm -f "$(pidfile "$name")"
  done
  echo "slurm-local: stopped ($DIR)" >&2
}

status() {
  local name pid rc=0
  for name in munged slurmctld slurmd; do
    if pid=$(alive_pid "$name"); then echo "$name running (pid $pid)"; else echo "$name stopped"; rc=1; fi
  done
  return $rc
}

case $cmd in
  start) start ;;
  stop) stop ;;
  env)
    [[ -f "$CONF" ]] || { echo "slurm-local: no $CONF: run $0 start $DIR first" >&2; exit 1; }
    echo "export SLURM_CONF=$CONF"
    ;;
  status) status ;;
  *) usage ;;
esac
