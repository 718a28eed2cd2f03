#!/usr/bin/env bash
# Start a single-node SLURM cluster (Debian slurm-wlm 22.05 + munge) on this machine, as root, without
# systemd. Used by .ci/run before the `slurm` tests and by anyone who wants to try the slurm profile
# locally. Idempotent: a second run reuses installed packages and running daemons (~1 s).
#
#   bash scripts/slurm/start.sh          # installs slurm-wlm + munge with apt-get if missing
#   SLURM_ACCOUNTING=1 bash scripts/slurm/start.sh   # also mariadb + slurmdbd, so that sacct works
#
# Daemons write pid files under /run/slurm and /run/munge; scripts/slurm/stop.sh stops them by pid.
# Without accounting, `sacct` fails: use `slurm-status-command: squeue` (profiles/slurm does).
# Exits non-zero with a message naming what failed and where its log is.
set -euo pipefail
ACCT=${SLURM_ACCOUNTING:-0}
PARTITION=${SLURM_PARTITION_NAME:-debug}
export DEBIAN_FRONTEND=noninteractive
LOG=/var/log/slurm
RUN=/run/slurm
T0=$(date +%s)

die() { echo "scripts/slurm/start.sh: error: $*" >&2; exit 1; }
note() { echo "scripts/slurm/start.sh: $*"; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts slurmctld/slurmd as root)"
[ "$(uname -s)" = Linux ] || die "needs Linux (Debian/Ubuntu with apt-get)"

# --- packages ----------------------------------------------------------------
pkgs="munge slurm-client slurmctld slurmd"
[ "$ACCT" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server mariadb-client"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || die "packages missing:$missing, and no apt-get to install them"
  note "installing$missing (apt-get; about a minute)"
  apt-get update -qq >/tmp/slurm-apt.log 2>&1 ||
    die "apt-get update failed (no network or no apt sources?); see /tmp/slurm-apt.log"
  # policy-rc.d: the packages' postinst must not try to start services (no systemd/init here)
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends $missing >>/tmp/slurm-apt.log 2>&1 || rc=$?
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install$missing failed (exit $rc); see /tmp/slurm-apt.log"
fi
for b in munged munge slurmctld slurmd sinfo sbatch squeue scontrol; do
  command -v "$b" >/dev/null || die "'$b' not found on PATH after install"
done

# --- munge -------------------------------------------------------------------
mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
[ -s /etc/munge/munge.key ] || {
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
}
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 700 /etc/munge; chmod 600 /etc/munge/munge.key; chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  rm -f /run/munge/munged.pid
  su -s /bin/sh munge -c /usr/sbin/munged ||   # daemonizes; pid in /run/munge/munged.pid
    die "munged failed to start; see /var/log/munge/munged.log"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
fi
munge -n | unmunge >/dev/null 2>&1 || die "munge does not work; see /var/log/munge/munged.log"

# --- slurm.conf --------------------------------------------------------------
H=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 * 8 / 10 ))   # MB, below the real total
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOG" "$RUN"
if [ "$ACCT" = 1 ]; then
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
CONF=$(cat <<CONF_EOF
# written by scripts/slurm/start.sh (single-node test cluster)
ClusterName=ci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
$ACCT_LINES
JobCompType=jobcomp/none
ReturnToService=2
# squeue-based status checks need finished jobs to stay visible for a while, and tests read every job
# of a slice from squeue after it ends: on a loaded machine a slice outlasted 300 s and its first jobs
# were gone (test_smoke_slice_runs_under_slurm, KeyError)
MinJobAge=3600
KillWait=5
NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Default=YES Nodes=ALL MaxTime=INFINITE State=UP
CONF_EOF
)
conf_changed=0
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$CONF" ]; then
  printf '%s\n' "$CONF" >/etc/slurm/slurm.conf
  conf_changed=1
fi

# --- accounting (optional) ---------------------------------------------------
if [ "$ACCT" = 1 ]; then
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! mysqladmin ping >/dev/null 2>&1; then
    nohup /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
      >"$LOG/mariadb.log" 2>&1 &
    for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.5; done
    mysqladmin ping >/dev/null 2>&1 || die "mariadb did not start; see $LOG/mariadb.log"
  fi
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat >/etc/slurm/slurmdbd.conf <<DBD_EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DBD_EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  alive "$RUN/slurmdbd.pid" || slurmdbd || die "slurmdbd failed to start; see $LOG/slurmdbd.log"
  for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -n list cluster format=cluster 2>/dev/null | grep -qw ci ||
    sacctmgr -i add cluster ci >/dev/null || die "sacctmgr add cluster failed; see $LOG/slurmdbd.log"
fi

# --- slurmctld / slurmd ------------------------------------------------------
if alive "$RUN/slurmctld.pid"; then
  [ "$conf_changed" = 1 ] && { scontrol reconfigure || die "scontrol reconfigure failed; see $LOG/slurmctld.log"; }
else
  rm -f "$RUN/slurmctld.pid"
  slurmctld || die "slurmctld failed to start; see $LOG/slurmctld.log"
fi
if ! alive "$RUN/slurmd.pid"; then
  rm -f "$RUN/slurmd.pid"
  slurmd || die "slurmd failed to start; see $LOG/slurmd.log"
fi
ready() { sinfo -h -N -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; }
for _ in $(seq 40); do ready && break; sleep 0.5; done
if ! ready; then   # a node left DOWN/DRAIN by an earlier run
  scontrol update NodeName="$H" State=RESUME >/dev/null 2>&1 || true
  for _ in $(seq 20); do ready && break; sleep 0.5; done
fi
ready || die "node $H is not idle: $(sinfo -h -N -o '%t %E' 2>&1); see $LOG/slurmctld.log and $LOG/slurmd.log"
out=$(timeout 60 srun -t 1 -N 1 -n 1 hostname 2>&1) ||
  die "test job (srun hostname) failed: $out; see $LOG/slurmctld.log"
sinfo
note "slurm up: partition '$PARTITION', node $H ($CPUS CPUs, $MEM MB), accounting $([ "$ACCT" = 1 ] && echo on || echo off), $(( $(date +%s) - T0 )) s"
