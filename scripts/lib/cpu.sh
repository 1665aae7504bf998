# CPU accounting for the benchmark scripts, from /proc. Sourced, not run.

# ticks PID...: the CPU time (user and system, clock ticks) the processes
# have used so far.
ticks() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# runq PID...: the time (µs) the processes' threads waited for a CPU so far.
runq() {
  local t=0 p
  for p in "$@"; do
    t=$((t + $(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%d", s / 1000}')))
  done
  echo "$t"
}

# machine_ticks: the whole machine's busy ticks and all its ticks.
machine_ticks() { awk '/^cpu / {all = 0; for (i = 2; i <= NF; i++) all += $i; print all - $5 - $6, all}' /proc/stat; }

# postgres_pids DBURL: the processes of the PostgreSQL server behind DBURL,
# its postmaster and children (none of another server on the machine).
postgres_pids() {
  local pm
  pm=$(head -1 "$(psql "$1" -Atc 'SHOW data_directory' 2>/dev/null)/postmaster.pid" 2>/dev/null) || return 0
  echo "$pm" $(pgrep -P "$pm" | tr '\n' ' ' || true)
}
