#!/usr/bin/env bash
# Stop the daemons that scripts/slurm/start.sh started, by pid file (never by name), and wait for them
# to exit. Safe to run when nothing is running. Packages and /etc/slurm stay installed.
set -uo pipefail
stop() {  # pidfile name
  local f=$1 name=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "scripts/slurm/stop.sh: $name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
      kill -9 "$pid" 2>/dev/null
    fi
    echo "scripts/slurm/stop.sh: stopped $name (pid $pid)"
  fi
  rm -f "$f"
}
stop /run/slurm/slurmd.pid slurmd
stop /run/slurm/slurmctld.pid slurmctld
stop /run/slurm/slurmdbd.pid slurmdbd
stop /run/mysqld/mysqld.pid mariadbd
stop /run/munge/munged.pid munged
exit 0
