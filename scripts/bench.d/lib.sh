# Helpers of scripts/bench (sourced after scripts/lib/e2e.sh, whose $work,
# free_port, serve_dir, start_regfs, stop_regfs, regfs_site, run_nginx and
# start_nginx they build on).

bench_dir=scripts/bench.d

# pypi_config FILE CACHE_DIR UPSTREAM PROJECTS [STATE_DIR]: a one-mirror
# PyPI config ("pypi"); PROJECTS is a TOML array body; state in $work/state
# unless STATE_DIR is given.
pypi_config() {
    cat >"$1" <<CONF
cache_dir = "$2"
state_dir = "${5:-$work/state}"
[[mirror]]
name = "pypi"
layout = "pypi"
upstream = "$3"
projects = [$4]
CONF
}

# static_upstream DIR ROOT [PORT]: nginx serving ROOT as a plain static upstream,
# negotiating PEP 691 like the shipped config (/simple/<p>/ answers
# index.v1_json for the JSON Accept header) and answering /<name> from
# <name>/index.json as an npm registry does (tests/fixtures/serve.py --npm);
# every request is logged as "METHOD URI STATUS BYTES" in DIR/upstream.log.
# Sets $up_port (to PORT if given).
static_upstream() {
    local dir=$1 root=$2
    mkdir -p "$dir"
    up_port=${3:-$(free_port)}
    cat >"$dir/site.conf" <<CONF
log_format bench_upstream '\$request_method \$request_uri \$status \$body_bytes_sent';
map \$http_accept \$bench_upstream_index {
    default                                      index.html;
    "~application/vnd\.pypi\.simple\.v1\+json"   index.v1_json;
}
server {
    listen 127.0.0.1:$up_port;
    root $root;
    access_log $dir/upstream.log bench_upstream;
    sendfile on;
    tcp_nopush on;
    location / {
        try_files \$uri \$uri/index.json =404;
    }
    location /simple/ {
        index \$bench_upstream_index;
        location ~ \.v1_json\$ {
            types { } default_type application/vnd.pypi.simple.v1+json;
        }
    }
}
CONF
    run_nginx "$dir" "$dir/site.conf" "$up_port"
}

# free_low_port: a free loopback port below 32768 (apt-cacher-ng 3.7.4 fails
# to listen on, and to fetch from, any port above 32767: "Error resolving
# address for binding").
free_low_port() {
    python3 -c '
import random, socket
for _ in range(200):
    s, p = socket.socket(), random.randint(20000, 32767)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break'
}

# stop_nginx DIR: stops the nginx run_nginx started in DIR, and waits for it.
stop_nginx() {
    local pid
    pid=$(cat "$1/nginx.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$1/nginx.pid"
}

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds; fails the row
# with "WHAT within SECONDS s" after SECONDS.
wait_for() {
    local secs=$1 what=$2 end=$((SECONDS + $1))
    shift 2
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || fail "$what within $secs s"
        sleep 0.05
    done
}

# wait_path PATH SECONDS: until PATH exists.
wait_path() { wait_for "$2" "$1 did not appear" test -e "$1"; }

# wait_http URL: until URL answers at all (any status), for up to 60 s.
wait_http() { wait_for 60 "$1 did not answer" curl -s -o /dev/null "$1"; }

# prefetch: caches every artifact of the mirror through the running mount.
prefetch() {
    "$REGFS" prefetch --config "$work/regfs.toml" pypi "$@" >>"$work/prefetch.log" 2>&1 ||
        { tail -5 "$work/prefetch.log" >&2; fail "prefetch failed"; }
}

# status_field NAME: a number from `regfs status --json` for the pypi mirror.
status_field() {
    "$REGFS" status --config "$work/regfs.toml" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0][sys.argv[1]])' "$1"
}

# json_field JSON NAME: a field of a JSON object ("None" when absent).
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"; }

# object_path SHA256 CACHE_DIR: where the cache keeps a verified artifact.
object_path() { echo "$2/objects/sha256/${1:0:2}/${1:2}"; }

# hf_median JSON [INDEX]: the median (s) of one hyperfine --export-json result.
hf_median() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["median"])' "$1" "${2:-0}"
}

# median: of the numbers on stdin, one a line.
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# phase WHAT: a timestamped progress line in the row group's log.
phase() { echo "[$(date +%T)] $*"; }

# calc EXPR: floating-point arithmetic.
calc() { awk "BEGIN {x = $*; printf \"%.6g\n\", x}"; }

# elapsed T0: seconds since T0 (an $EPOCHREALTIME).
elapsed() { calc "$EPOCHREALTIME - $1"; }

# curl_all OUT URL...: GETs every URL in order over one keep-alive curl;
# writes "CODE BYTES" a line to OUT, prints the wall time (s); fails the row
# unless every answer was a 200.
curl_all() {
    local out=$1; shift
    local args=() u t0 t
    for u in "$@"; do args+=(-o /dev/null "$u"); done
    t0=$EPOCHREALTIME
    curl -s -w '%{http_code} %{size_download}\n' "${args[@]}" >"$out" || true
    t=$(elapsed "$t0")
    local bad
    bad=$(grep -vc '^200 ' "$out" || true)
    [ "$bad" = 0 ] && [ "$(wc -l <"$out")" = $# ] || fail "curl: $bad of $# requests were not 200 ($(grep -v '^200 ' "$out" | head -1))"
    echo "$t"
}

# compare_rps ROW METRIC TARGET URL PATHS BASE_URL BASE_PATHS [NOTE]: req/s of
# wrk (wrk_rps) on URL, the regfs side, against BASE_URL, each GETting random
# paths from its own PATHS file: a 1 s warm-up of each, then the best of
# $WRK_ROUNDS alternating rounds of $WRK_SECS s. Records the row.
compare_rps() {
    local row=$1 metric=$2 target=$3 url=$4 paths=$5 burl=$6 bpaths=$7 note=${8:-} round r b best=0 bbest=0
    wrk_rps "$burl" "$bpaths" 1 "$work/wrk-warmup-base.log" >/dev/null
    wrk_rps "$url" "$paths" 1 "$work/wrk-warmup-regfs.log" >/dev/null
    for round in $(seq "$WRK_ROUNDS"); do
        b=$(wrk_rps "$burl" "$bpaths" "$WRK_SECS" "$work/wrk-base-$round.log")
        r=$(wrk_rps "$url" "$paths" "$WRK_SECS" "$work/wrk-regfs-$round.log")
        echo "$row round $round: baseline $b req/s, regfs $r req/s"
        bbest=$(calc "$b > $bbest ? $b : $bbest")
        best=$(calc "$r > $best ? $r : $best")
    done
    record "$row" "$metric" req/s "$best" "$bbest" "$target" "$note"
}

# wrk_rps URL PATHS_FILE SECONDS LOG: requests/s of wrk with 64 connections
# fetching random paths from PATHS_FILE; fails the row on any error (a
# request unanswered for 10 s is one: wrk's default of 2 s is too short for
# the slower peers).
wrk_rps() {
    wrk -t2 -c64 -d"$3s" --timeout 10s --latency -s "$bench_dir/random.lua" "$1" -- "$2" >"$4" 2>&1 || fail "wrk failed: $(tail -3 "$4")"
    if grep -qE 'Non-2xx|Socket errors' "$4"; then fail "wrk saw errors: $(grep -E 'Non-2xx|Socket errors' "$4")"; fi
    awk '/^Requests\/sec:/ {print $2}' "$4"
}

# record ROW METRIC UNIT REGFS BASELINE TARGET [NOTE]: one result line.
# TARGET is ">=0.9x" / "<=2x" (on REGFS/BASELINE), "<=150" / "==1" (on REGFS
# alone), or "-" (report only); BASELINE "-" when there is none.
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >>"$results"
    printf 'bench: %s %s: regfs %s, baseline %s %s %s\n' "$1" "$2" "$4" "$5" "$3" "${7:+($7)}" >&2
}

# skip ROW METRIC REASON: a row that was not measured.
skip() { printf '%s\t%s\t-\t-\t-\t-\tskipped: %s\n' "$1" "$2" "$3" >>"$results"; }

# group_cleanup: stops what a row group left running, keeps its logs in
# $logdir/NAME/ and removes its scratch (see run_group).
group_cleanup() {
    local f
    for f in "$work"/*/nginx.pid; do [ -f "$f" ] && stop_nginx "$(dirname "$f")"; done
    local keep=$logdir/$(basename "$work")
    mkdir -p "$keep"
    (cd "$work" && find . -maxdepth 2 \( -name '*.log' -o -name '*.time' -o -name '*.json' -o -name '*.times' \) \
        -exec cp --parents -t "$keep" {} +) 2>/dev/null || true
    e2e_cleanup
}

# wanted ROW: whether this run measures ROW (all rows unless some were named).
wanted() { [ ${#only[@]} = 0 ] || [[ " ${only[*]} " == *" $1 "* ]]; }

# run_group NAME "ROW..." FUNCTION: runs FUNCTION in a subshell with its own
# scratch $work/NAME (removed after) and log target/bench-logs/NAME.log. If
# it breaks, the rows it did not record are reported as errors.
run_group() {
    local name=$1 rows=$2 fn=$3 r want=0 t0 rc
    if [ ${#only[@]} -gt 0 ]; then
        for r in $rows; do [[ " ${only[*]} " == *" $r "* ]] && want=1; done
        [ $want = 1 ] || return 0
    fi
    echo "bench: $name ($rows) ..." >&2
    t0=$EPOCHREALTIME
    set +e
    (
        set -e
        work=$top/$name
        mkdir -p "$work"
        chmod 755 "$work"
        pids=()
        regfs_pid=
        trap group_cleanup EXIT
        trap 'exit 130' INT TERM
        "$fn"
    ) >"$logdir/$name.log" 2>&1
    rc=$?
    set -e
    [ $rc = 130 ] && exit 130
    if [ $rc != 0 ]; then
        harness_broke=1
        local why
        why=$(grep -m1 'FAIL' "$logdir/$name.log" || tail -1 "$logdir/$name.log")
        for r in $rows; do
            grep -q "^$r	" "$results" 2>/dev/null ||
                printf '%s\t-\t-\t-\t-\t-\terror: %s (see %s)\n' "$r" "${why:0:120}" "$logdir/$name.log" >>"$results"
        done
        echo "bench: $name BROKE (exit $rc), see $logdir/$name.log" >&2
    fi
    echo "bench: $name took $(calc "int($EPOCHREALTIME - $t0)") s" >&2
}

# restart_regfs READY_PATH: a cold server: nginx and the mount stopped, the
# $work/cache and $work/state of $work/regfs.toml removed, both started again
# (start_regfs waits for READY_PATH, i.e. the first sync).
restart_regfs() {
    stop_nginx "$work"
    if [ -n "$regfs_pid" ] && kill -0 "$regfs_pid" 2>/dev/null; then stop_regfs; fi
    rm -rf "$work/cache" "$work/state"
    start_regfs "$work/regfs.toml" "$1"
    start_nginx
}

# upstream_gets REGEX: how many GETs of the static upstream so far were for a
# path matching REGEX.
upstream_gets() { awk -v re="$1" '$1 == "GET" && $2 ~ re' "$work/upstream/upstream.log" | wc -l; }

# stop_pid [PID]: SIGTERM to a server this row group started, and wait for it.
stop_pid() {
    [ -n "${1:-}" ] || return 0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}


# count_files N GLOB...: fails the row unless GLOB matched exactly N files.
count_files() {
    local n=$1; shift
    local got=0 f
    for f in "$@"; do [ -e "$f" ] && got=$((got + 1)); done
    [ "$got" = "$n" ] || fail "expected $n files, found $got ($1 ...)"
}

# peer_clients ROW WHAT PEER FN ARTIFACT_REGEX: a client against regfs (through
# nginx) and against a peer, cold and warm, $P_RUNS times. Each run, for each
# SIDE (regfs, peer): `FN_reset SIDE RUN` makes the server side cold (empty
# caches) and does the untimed client preparation, then `FN_client SIDE DIR`
# (DIR a new empty directory) is timed twice: cold, then warm. Per the
# upstream's log, a cold run must have fetched every artifact (a path matching
# ARTIFACT_REGEX; $P_PACKAGES of them) and a warm run none. Records the
# medians, regfs against the peer, target <=1x.
peer_clients() {
    local row=$1 what=$2 peer=$3 fn=$4 re=$5 runs=${PEER_RUNS:-$P_RUNS} i side temp t0 before fetched
    for i in $(seq "$runs"); do
        for side in regfs peer; do
            phase "$row run $i: $side, cold server"
            "${fn}_reset" "$side" "$i"
            for temp in cold warm; do
                before=$(upstream_gets "$re")
                mkdir -p "$work/run/$side-$temp-$i"
                t0=$EPOCHREALTIME
                "${fn}_client" "$side" "$work/run/$side-$temp-$i"
                elapsed "$t0" | tee -a "$work/$side-$temp.times"
                fetched=$(($(upstream_gets "$re") - before))
                if [ $temp = cold ]; then
                    [ "$fetched" -ge "$P_PACKAGES" ] || fail "$side: the cold run fetched only $fetched artifacts from upstream"
                else
                    [ "$fetched" = 0 ] || fail "$side: the warm run fetched $fetched artifacts from upstream again"
                fi
            done
        done
    done
    for temp in cold warm; do
        record "$row" "$what, $temp, vs $peer" s "$(median <"$work/regfs-$temp.times")" "$(median <"$work/peer-$temp.times")" "<=1x" \
            "median of $runs; runs $(paste -sd/ "$work/regfs-$temp.times") vs $(paste -sd/ "$work/peer-$temp.times") s"
    done
}
