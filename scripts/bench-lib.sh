# Helpers shared by the benchmark scripts (sourced, not run).

# field FILE KEY: a value from the RESULT line of a `dynamo bench` report.
field() { awk -v k="$2" '/^RESULT/{for(i=2;i<=NF;i++){split($i,a,"="); if(a[1]==k) print a[2]}}' "$1"; }

# wait_for_dev: until the `dynamo dev` cluster's last node answers; fails after 10 s (a cluster
# that did not start, for example on a port already taken, must not be benchmarked).
wait_for_dev() {
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8083/status >/dev/null && return 0; sleep 0.1; done
  echo "the dev cluster did not answer on 127.0.0.1:8083 within 10 s" >&2
  return 1
}

# metric_total NAME: the sum over the dev cluster's nodes of every /metrics sample whose name
# starts with NAME (all its label sets).
metric_total() {
  for port in 8081 8082 8083; do curl -s "http://127.0.0.1:$port/metrics" || true; done \
    | awk -v name="$1" 'index($0, name) == 1 {n += $NF} END {printf "%d\n", n}'
}

# served_requests: the client requests the dev cluster's nodes have answered so far (the count of
# their request-duration histograms, over every operation and outcome).
served_requests() { metric_total dynamo_request_duration_seconds_count; }

# apt_install PACKAGE...: installs Debian packages (through sudo when not root).
apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
