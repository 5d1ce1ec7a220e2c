# scripts/bench-lib.sh: helpers shared by scripts/bench and scripts/bench-peers (sourced, not
# run). The caller defines log and die, and sets STOP_TIMEOUT and STARTUP_TIMEOUT (seconds).
#
# Process helpers: alive, cpu_ticks, tree_ticks, nap (NAP_FD), stop_pid (STOP_RC, STOP_SECS).
# CPU in ns through a cgroup of the monitor's own: cg_start, cg_ns, cg_stop (CG_DIR).
# Audit helpers: audit_field, audit_state, set_conf, auditd_conf, auditd_start (AUDITD_PID),
# auditd_teardown, check_audit_state, repair_audit_state. They use the caller's globals
# AUDITD_RULE (array), AUDITD_RULE_ADDED, AUDITD_PREV_BACKLOG, AUDIT_ENABLED0, AUDIT_BACKLOG0,
# AUDIT_STATE0 and AUDIT_RULES_BEFORE (a file with `auditctl -l` from before the bench).

# alive PID: the process exists and is not a zombie (an exited, unwaited child
# still answers kill -0).
alive() {
    local st
    read -r st 2>/dev/null <"/proc/$1/stat" || return 1
    st=${st##*) }
    [[ ${st:0:1} != Z ]]
}

# cpu_ticks PID: utime+stime of the whole process (all threads), in clock ticks.
cpu_ticks() {
    local st f
    st=$(cat "/proc/$1/stat") || die "cannot read /proc/$1/stat"
    st=${st##*) } # fields from 3 (state) on; comm may contain spaces
    read -r -a f <<<"$st"
    echo $((f[11] + f[12])) # fields 14 (utime) and 15 (stime)
}

# proc_scan: fills PROC_PARENT[pid]=ppid and PROC_STAT[pid]="utime stime cutime cstime" for
# every process now.
declare -A PROC_PARENT=() PROC_STAT=()
proc_scan() {
    local st f p
    PROC_PARENT=() PROC_STAT=()
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        read -r st 2>/dev/null <"/proc/$p/stat" || continue
        st=${st##*) }
        read -r -a f <<<"$st"
        PROC_PARENT[$p]=${f[1]}
        PROC_STAT[$p]="${f[11]} ${f[12]} ${f[13]} ${f[14]}"
    done
}

# descendants ROOT: the live descendants of ROOT in the last proc_scan, one per line.
descendants() {
    local root=$1 p q depth
    for p in "${!PROC_PARENT[@]}"; do
        [[ $p != "$root" ]] || continue
        q=${PROC_PARENT[$p]} depth=0
        while [[ -n $q && $q != 0 && $q != "$root" && $depth -lt 64 ]]; do
            q=${PROC_PARENT[$q]:-}
            depth=$((depth + 1))
        done
        [[ $q != "$root" ]] || echo "$p"
    done
}

# tree_ticks PID: CPU ticks of PID and every live descendant (utime+stime of each, all
# threads) plus PID's cutime+cstime (its children that exited and were waited for): what a
# monitor made of several processes (auditd and its plugins) has used so far.
tree_ticks() {
    local root=$1 total p u s cu cs
    proc_scan
    [[ -n ${PROC_STAT[$root]:-} ]] || die "cannot read /proc/$root/stat"
    read -r u s cu cs <<<"${PROC_STAT[$root]}"
    total=$((u + s + cu + cs))
    for p in $(descendants "$root"); do
        read -r u s cu cs <<<"${PROC_STAT[$p]}"
        total=$((total + u + s))
    done
    echo "$total"
}

# --- CPU accounting in nanoseconds -------------------------------------------------------
# utime+stime count 10 ms ticks, too coarse for a monitor that uses 20-40 ms per storm. A
# cgroup of the monitor's own counts every thread and child it has or will have, in ns, even
# after they exit: cpuacct.usage on a cgroup-v1 cpuacct hierarchy, else cpu.stat usage_usec
# on a cgroup-v2 mount (present in every v2 cgroup, no controller needed).
CG_DIR=""
CG_KIND=""
# cg_start NAME PID: creates the cgroup NAME and moves PID and its live descendants into it.
cg_start() {
    local name=$1 root=$2 base p
    if [[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then
        base=/sys/fs/cgroup/cpuacct CG_KIND=v1
    elif base=$(findmnt -n -o TARGET -t cgroup2 | head -n 1) && [[ -n $base && -f $base/cgroup.procs ]]; then
        CG_KIND=v2
    else
        die "no cgroup v1 cpuacct or cgroup v2 mount for CPU accounting"
    fi
    CG_DIR=$base/$name
    mkdir "$CG_DIR" || die "cannot create cgroup $CG_DIR"
    proc_scan
    echo "$root" >"$CG_DIR/cgroup.procs" || die "cannot move pid $root into $CG_DIR"
    # A descendant that exits meanwhile cannot be moved; its CPU is not this run's.
    for p in $(descendants "$root"); do
        echo "$p" >"$CG_DIR/cgroup.procs" 2>/dev/null || true
    done
}

# cg_ns: the CPU the cgroup's processes have used so far, in ns.
cg_ns() {
    local k v
    if [[ $CG_KIND == v1 ]]; then
        cat "$CG_DIR/cpuacct.usage"
    else
        while read -r k v; do
            [[ $k != usage_usec ]] || { echo $((v * 1000)); return; }
        done <"$CG_DIR/cpu.stat"
        die "no usage_usec in $CG_DIR/cpu.stat"
    fi
}

# cg_stop: removes the cgroup once the processes in it have exited (call after stop_pid).
cg_stop() {
    local i
    [[ -n $CG_DIR ]] || return 0
    for ((i = 0; i < 50; i++)); do
        rmdir "$CG_DIR" 2>/dev/null && { CG_DIR=""; return 0; }
        nap 0.1
    done
    log "cgroup $CG_DIR still has processes: $(paste -sd' ' "$CG_DIR/cgroup.procs")"
    return 1
}

# nap SECS: sleep without starting a process (a read timing out on our FIFO, NAP_FD).
NAP_FD=""
nap() {
    if [[ -n $NAP_FD ]]; then
        read -r -t "$1" -u "$NAP_FD" _ || true
    else
        sleep "$1"
    fi
}

# stop_pid PID [NAME] [SIGNAL]: send SIGNAL (default TERM) to our process, wait up to
# STOP_TIMEOUT s, then SIGKILL. Sets STOP_RC and STOP_SECS.
# The wait starts no process (alive and nap are builtins only): the bench's own forks and
# exits would otherwise keep a proc-connector reader busy.
stop_pid() {
    local pid=$1 name=${2:-sensor} sig=${3:-TERM} i t0
    t0=$EPOCHREALTIME
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        alive "$pid" || break
        nap 0.1
    done
    if alive "$pid"; then
        log "$name $pid did not exit ${STOP_TIMEOUT}s after SIG$sig; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOP_RC=0
    wait "$pid" || STOP_RC=$?
    STOP_SECS=$(python3 -c "print(round($EPOCHREALTIME-$t0,2))")
}

# audit_field NAME: one field of `auditctl -s` (enabled, pid, backlog_limit, lost).
audit_field() { { auditctl -s 2>/dev/null || true; } | awk -v k="$1" '$1 == k { print $2 }'; }

# audit_state: the audit state a bench must leave as it found it.
audit_state() {
    local rules
    rules=$({ auditctl -l 2>&1 || true; } | paste -sd';' -)
    echo "enabled $(audit_field enabled), pid $(audit_field pid), backlog_limit $(audit_field backlog_limit), rules: $rules"
}

# set_conf FILE KEY VALUE: set `KEY = VALUE` in an auditd.conf (replace or append).
set_conf() {
    local file=$1 key=$2 value=$3
    if grep -qE "^[[:space:]]*$key[[:space:]]*=" "$file"; then
        KEY=$key VALUE=$value python3 - "$file" <<'PY'
import os, re, sys
path = sys.argv[1]
key, value = os.environ["KEY"], os.environ["VALUE"]
text = open(path).read()
text = re.sub(rf"(?m)^[ \t]*{re.escape(key)}[ \t]*=.*$", lambda _: f"{key} = {value}", text)
open(path, "w").write(text)
PY
    else
        printf '%s = %s\n' "$key" "$value" >>"$file"
    fi
}

# auditd_conf DIR: a private auditd configuration in DIR (auditd.conf from /etc/audit with
# log_file DIR/audit.log and plugin_dir DIR/plugins.d, empty unless the caller adds a
# plugin there), so no plugin of the host's configuration runs.
auditd_conf() {
    local dir=$1
    mkdir -p -m 0700 "$dir" "$dir/plugins.d"
    install -m 0640 /etc/audit/auditd.conf "$dir/auditd.conf"
    set_conf "$dir/auditd.conf" log_file "$dir/audit.log"
    set_conf "$dir/auditd.conf" use_libwrap no
    set_conf "$dir/auditd.conf" plugin_dir "$dir/plugins.d"
}

# auditd_start BIN DIR: start `BIN -n -c DIR` in the background (AUDITD_PID) and wait until
# the kernel names it as the audit daemon; dies when it exits or does not register in
# STARTUP_TIMEOUT s. Sets AUDITD_START_SECS (how long it took to register).
auditd_start() {
    local bin=$1 dir=$2 i t0
    "$bin" -n -c "$dir" >"$dir/auditd.out" 2>&1 &
    AUDITD_PID=$!
    t0=$EPOCHREALTIME
    for ((i = 0; i < STARTUP_TIMEOUT * 10; i++)); do
        [[ $(audit_field pid) != "$AUDITD_PID" ]] || break
        if ! alive "$AUDITD_PID"; then
            tail -n 20 "$dir/auditd.out" >&2 || true
            local rc=0
            wait "$AUDITD_PID" || rc=$?
            AUDITD_PID=""
            die "auditd exited (status $rc) before it registered"
        fi
        sleep 0.1
    done
    if [[ $(audit_field pid) != "$AUDITD_PID" ]]; then
        tail -n 20 "$dir/auditd.out" >&2 || true
        die "auditd pid $AUDITD_PID did not show in auditctl -s within ${STARTUP_TIMEOUT}s"
    fi
    AUDITD_START_SECS=$(python3 -c "print(round($EPOCHREALTIME-$t0,2))")
}

# auditd_teardown: delete our rule, stop our auditd by pid, put back backlog_limit
# and (if audit was disabled before) disable audit. Safe to call twice.
auditd_teardown() {
    if [[ $AUDITD_RULE_ADDED == 1 ]]; then
        auditctl -d "${AUDITD_RULE[@]}" >/dev/null 2>&1 || log "warning: deleting the $AUDITD_KEY audit rule failed"
        AUDITD_RULE_ADDED=0
    fi
    if [[ -n $AUDITD_PID ]]; then
        local pid=$AUDITD_PID
        stop_pid "$pid" auditd
        AUDITD_PID=""
        [[ $STOP_RC -eq 0 ]] || log "warning: auditd pid $pid exited with status $STOP_RC after SIGTERM"
    fi
    if [[ -n $AUDITD_PREV_BACKLOG ]]; then
        auditctl -b "$AUDITD_PREV_BACKLOG" >/dev/null 2>&1 || log "warning: restoring backlog_limit $AUDITD_PREV_BACKLOG failed"
        AUDITD_PREV_BACKLOG=""
    fi
    if [[ $AUDIT_ENABLED0 == 0 && $(audit_field enabled) != 0 ]]; then
        auditctl -e 0 >/dev/null 2>&1 || log "warning: auditctl -e 0 failed"
    fi
}

# repair_audit_state: after a sensor that had to be killed, remove the audit rules
# that were not there before and put enabled and backlog_limit back.
repair_audit_state() {
    [[ -n $AUDIT_STATE0 ]] || return 0
    local line words
    while IFS= read -r line; do
        [[ $line == "-a "* ]] || continue
        grep -qxF -- "$line" "$AUDIT_RULES_BEFORE" && continue
        read -r -a words <<<"$line"
        words[0]=-d
        log "removing audit rule left behind: $line"
        auditctl "${words[@]}" >/dev/null 2>&1 || log "warning: auditctl ${words[*]} failed"
    done < <(auditctl -l 2>/dev/null || true)
    [[ $(audit_field backlog_limit) == "$AUDIT_BACKLOG0" ]] || auditctl -b "$AUDIT_BACKLOG0" >/dev/null 2>&1 || true
    [[ $(audit_field enabled) == "$AUDIT_ENABLED0" ]] || auditctl -e "$AUDIT_ENABLED0" >/dev/null 2>&1 || true
    check_audit_state "after repairing"
}

# check_audit_state WHEN: compare the audit state with the one before the bench.
AUDIT_CHANGED=""
check_audit_state() {
    [[ -n $AUDIT_STATE0 ]] || return 0
    local st
    st=$(audit_state)
    if [[ $st != "$AUDIT_STATE0" ]]; then
        log "WARNING: audit state changed ($1): was '$AUDIT_STATE0', now '$st'"
        AUDIT_CHANGED+="${AUDIT_CHANGED:+; }$1: $st"
    fi
}
