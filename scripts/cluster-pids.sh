# Sourced by scripts/cluster-up.sh and scripts/cluster-down.sh: where the
# local cluster keeps its pid files, and which of them name a live node.
# Expects $cluster_dir.

pid_file() { echo "$cluster_dir/node-$1.pid"; }

# The pid in node $1's pid file, if it is a running metrobus process (not a
# recycled pid); fails otherwise.
running_pid() {
    local file pid
    file=$(pid_file "$1")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q metrobus || return 1
    echo "$pid"
}
