# What the prepared lease scripts share (benchmarks/gpu_check.sh, tools/gpu_train.sh); sourced, with
# ROOT set to the checkout. Functions only: nothing runs when it is sourced.

# Short hash of the checkout's commit, marked when the tree has uncommitted changes; empty outside this
# checkout's git (a copy without .git inside another repository must not report that repository's commit).
commit_id() {
  [ "$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null)" = "$ROOT" ] || return 0
  local c; c=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || return 0
  [ -z "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] || c="$c + uncommitted changes"
  echo "$c"
}

# The commit to name in a summary: this checkout's, else what --pack wrote beside the carried data.
commit_or_packed() {
  local c; c=$(commit_id)
  [ -n "$c" ] || c=$(cat "$ROOT/.gpu_data/COMMIT" 2>/dev/null || echo unknown)
  echo "$c"
}

# Python: $PYTHON, else the checkout's .venv, else python3 (the lent machine's, which holds torch).
pick_python() {
  local py="${PYTHON:-}"
  [ -n "$py" ] || { [ -x "$ROOT/.venv/bin/python" ] && py="$ROOT/.venv/bin/python" || py=python3; }
  echo "$py"
}

# One line: host, GPU, CPU, Python and library versions (the project's runtime.stats), for a summary.
machine_stamp() {
  "$1" - 2>/dev/null <<'PYEOF' || echo "$(hostname) (stamp unavailable)"
from edgedenoise.runtime.stats import machine_info, versions
m = machine_info()
print("{host}: GPU {gpu}; CPU {cpu}, {cores} cores; Python {python}, ".format(**{**m, "gpu": m["gpu"] or "none"})
      + ", ".join(f"{k} {v}" for k, v in versions().items()))
PYEOF
}
