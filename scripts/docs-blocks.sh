#!/usr/bin/env bash
# Runs the shell blocks of README.md and docs/**/*.md against a running dev stack
# (`scripts/dev.sh --demo`) and checks what each printed; `--lint` only checks that every
# shell block is marked. scripts/walkthrough.sh calls it on the stack it started.
#
# The marks: every ```sh / ```bash / ```shell block is preceded, on the lines right above
# its fence, by HTML comments (invisible on GitHub) that say what becomes of it:
#
#   <!-- docs: expect TEXT -->    run it; its output (stdout and stderr) must contain TEXT
#                                 (a fixed string; one line per TEXT, at least one)
#   <!-- docs: skip REASON -->    not run, for the REASON given (it needs launchd, the Mac,
#                                 a real Codex account, …)
#   <!-- NAME:start -->           a named block (ending at <!-- NAME:end -->) that a script
#                                 or test reads and runs with checks of its own: README's
#                                 `walkthrough` (scripts/walkthrough.sh), backup.md's
#                                 `backup` and `restore` (tests/scripts/test_lifecycle.py)
#
# A shell block with none of these fails the lint, and so does a skip without a reason or a
# fence without a language (```text for output, ```json, …; it could hide a command).
#
# How the blocks run: one bash per file, its blocks in order (a variable one block sets is
# there for the next, as for a reader pasting them), each block's output kept apart. The
# blocks run in a scratch directory that looks like a checkout to them: the repo's
# files and dirs (`target/`, `scripts/`, `.tools/`, …) are linked in, `.local/` is the
# stack's dir (BAA_DEV_DIR), and the binaries are on PATH. Set before the first block, as a reader who followed the README has them:
#   TOKEN, BAA_SHARED_TOKEN   the dev token (.local/dev-token)
#   SID                       a fresh session (`POST /v1/codex/sessions`)
# and the ids the API docs show are replaced by real ones: task_demo and run_demo by a
# finished demo task ("Create the file hello.txt") and its run, sched_demo by a schedule
# made for the docs. After each file the automation mode is set back to running. The blocks
# expect a fresh stack (walkthrough.sh starts one): a second pass on the same one finds the
# demo task's hello.txt already merged.
# /tmp/baa-docs-demo (control-interfaces.md's file examples) is removed first. At the end,
# scripts/status-shape.py --check compares status-api-interfaces.md's field list with this
# stack's `GET /v1/status`.
#
# Usage: scripts/docs-blocks.sh [--lint] [FILE.md…]   (default: README.md docs/**/*.md)
# Env: BAA_DEV_DIR (the stack's dir, required to run), BAA_DEV_CONDUCTOR_PORT /
# BAA_DEV_STATUS_PORT / BAA_DEV_CODEXD_PORT (URLs of 4317/4318/4319 in the blocks are moved
# to them), BAA_DOCS_FILE_TIMEOUT (seconds per file, default 120).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

lint_only=0
files=()
for arg in "$@"; do
  case "$arg" in
    --lint) lint_only=1 ;;
    -h|--help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "docs-blocks.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) files+=("$arg") ;;
  esac
done
if [ "${#files[@]}" = 0 ]; then
  # README first; the API docs that pause, drain and restart codexd's child late.
  files=(README.md docs/tasks.md docs/api/business-interfaces.md docs/api/status-api-interfaces.md
    docs/api/codexd-interfaces.md docs/api/control-interfaces.md docs/runtime/*.md docs/*.md)
  # docs/tasks.md is in both lists: keep the first.
  seen=" "
  uniq=()
  for f in "${files[@]}"; do
    case "$seen" in *" $f "*) ;; *) uniq+=("$f"); seen="$seen$f " ;; esac
  done
  files=("${uniq[@]}")
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/baa-docs.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# split FILE DIR: writes each shell block of FILE as DIR/N.sh with DIR/N.meta (line 1: its
# line in FILE; then its directives, one per line: `expect TEXT`, `skip REASON`,
# `named NAME`); prints nothing.
split() {
  awk -v dir="$2" '
    function flush_marks() { marks = ""; nmarks = 0 }
    BEGIN { n = 0; inb = 0; flush_marks() }
    inb {
      if ($0 ~ /^```/) { inb = 0; close(body); next }
      if (run) print > body
      next
    }
    /^```/ {
      lang = substr($0, 4)
      if (lang == "sh" || lang == "bash" || lang == "shell") {
        n++; inb = 1; run = 1
        body = dir "/" n ".sh"; meta = dir "/" n ".meta"
        printf "%d\n%s", NR, marks > meta; close(meta)
        printf "" > body
      } else {
        inb = 1; run = 0
        # A fence without a language could hide a command: it must say what it holds.
        if (lang == "") printf "%d\n", NR > (dir "/unnamed")
      }
      flush_marks(); next
    }
    /^<!-- docs: .* -->$/ {
      m = $0; sub(/^<!-- docs: /, "", m); sub(/ -->$/, "", m)
      marks = marks m "\n"; next
    }
    /^<!-- [a-z-]+:start -->$/ {
      m = $0; sub(/^<!-- /, "", m); sub(/:start -->$/, "", m)
      marks = marks "named " m "\n"; next
    }
    { flush_marks() }
  ' "$1"
}

# count DIR: how many shell blocks split wrote there (numbered 1…N; a glob would sort 10
# before 2).
count() { local c=0; while [ -e "$1/$((c + 1)).meta" ]; do c=$((c + 1)); done; echo "$c"; }

problems=0
lint() { echo "docs-blocks: $*" >&2; problems=$((problems + 1)); }

for f in "${files[@]}"; do
  d="$work/blocks/${f//\//_}"
  mkdir -p "$d"
  split "$f" "$d"
  if [ -e "$d/unnamed" ]; then
    while IFS= read -r line; do
      lint "$f:$line: a fence without a language: name it (\`\`\`sh, then mark it; \`\`\`text for output)"
    done <"$d/unnamed"
  fi
  for n in $(seq 1 "$(count "$d")"); do
    meta="$d/$n.meta"
    line="$(head -n 1 "$meta")"
    directives="$(tail -n +2 "$meta")"
    if [ -z "$directives" ]; then
      lint "$f:$line: a shell block with no mark: add <!-- docs: expect TEXT --> (it is run) or <!-- docs: skip REASON --> above its fence"
      continue
    fi
    while IFS= read -r dline; do
      case "$dline" in
        "named "?*) ;;
        "expect "?*) ;;
        "skip "?*) ;;
        skip*) lint "$f:$line: a skip needs its reason: <!-- docs: skip REASON -->" ;;
        *) lint "$f:$line: unknown mark \"$dline\" (expect TEXT, skip REASON)" ;;
      esac
    done <<<"$directives"
    if grep -q '^expect ' "$meta" && grep -q '^skip' "$meta"; then
      lint "$f:$line: a block is either run (expect) or skipped, not both"
    fi
  done
done
if [ "$problems" != 0 ]; then
  echo "docs-blocks: FAIL: $problems problem(s) with the marks (see scripts/docs-blocks.sh --help)" >&2
  exit 1
fi
if [ "$lint_only" = 1 ]; then
  echo "docs-blocks: every shell block is marked"
  exit 0
fi

: "${BAA_DEV_DIR:?docs-blocks.sh runs against a dev stack: set BAA_DEV_DIR to its dir (scripts/walkthrough.sh does)}"
conductor_port="${BAA_DEV_CONDUCTOR_PORT:-4317}"
status_port="${BAA_DEV_STATUS_PORT:-4318}"
codexd_port="${BAA_DEV_CODEXD_PORT:-4319}"
file_timeout="${BAA_DOCS_FILE_TIMEOUT:-120}"
api="http://127.0.0.1:$conductor_port"

fail() { echo "docs-blocks: FAIL: $*" >&2; exit 1; }

# The scratch checkout the blocks run in.
home="$work/checkout"
mkdir -p "$home"
for entry in "$repo"/* "$repo"/.tools; do
  [ -e "$entry" ] && ln -s "$entry" "$home/${entry##*/}"
done
ln -s "$BAA_DEV_DIR" "$home/.local"
token="$(cat "$BAA_DEV_DIR/dev-token")"

# wait_ready: the conductor proxies codexd and codexd's child runs (a block may have
# restarted it).
wait_ready() {
  local deadline=$((SECONDS + 60))
  until curl -s --max-time 2 "$api/v1/codex" | grep -q '"status":"running"'; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the stack was not ready (codexd's child running) within 60 s"
    sleep 0.3
  done
}

# field NAME: the value of the first "NAME":"value" of stdin (sed, not head: under pipefail
# a closed pipe could kill grep).
field() { grep -o "\"$1\":\"[^\"]*\"" | sed -n '1s/^"[^"]*":"\(.*\)"$/\1/p'; }

# control-interfaces.md writes /tmp/baa-docs-demo/hello.txt (overwrite false) and reads it.
rm -rf /tmp/baa-docs-demo

# The ids the API docs show, made real.
wait_ready
task_demo="$(curl -s -X POST "$api/v1/tasks" -H 'Content-Type: application/json' \
  -d '{"title":"docs demo task","prompt":"Create the file hello.txt"}' | field task_id)"
[ -n "$task_demo" ] || fail "could not queue the docs' demo task"
deadline=$((SECONDS + 60))
until curl -s "$api/v1/tasks/$task_demo" | grep -q '"status":"succeeded"'; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the docs' demo task $task_demo did not succeed within 60 s"
  sleep 0.3
done
run_demo="$(curl -s "$api/v1/tasks/$task_demo" | field run_id)"
sched_demo="$(curl -s -X POST "$api/v1/schedules" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"name":"docs demo","cron":"0 3 * * *","timezone":"UTC","enabled":false,"task":{"title":"Summarize","prompt":"Summarize the pending work."}}' \
  | field schedule_id)"
[ -n "$sched_demo" ] || fail "could not create the docs' demo schedule"

failed=0
ran=0
skipped=0
for f in "${files[@]}"; do
  d="$work/blocks/${f//\//_}"
  driver="$d/driver.sh"
  wait_ready
  {
    echo "cd '$home' || exit 1"
    echo "export PATH='$home/target/debug':\"\$PATH\""
    echo "TOKEN='$token'; export BAA_SHARED_TOKEN='$token'"
    # The CLI's default is the default port; a stack moved elsewhere is named to it.
    [ "$conductor_port" = 4317 ] || echo "export BAA_CONDUCTOR_LOCAL_API='$api'"
    printf 'docs_api=%q\n' "$api"
    cat <<'PREAMBLE'
SID=$(curl -s -X POST "$docs_api/v1/codex/sessions" -H 'Content-Type: application/json' -d '{"purpose":"duplex"}' \
  | grep -o '"sessionId":"[^"]*"' | sed -n '1s/^"sessionId":"\(.*\)"$/\1/p')
PREAMBLE
  } >"$driver"
  for n in $(seq 1 "$(count "$d")"); do
    meta="$d/$n.meta"
    grep -q '^expect ' "$meta" || { skipped=$((skipped + 1)); continue; }
    block="$d/$n.sh"
    text="$(cat "$block")"
    text="${text//127.0.0.1:4317/127.0.0.1:$conductor_port}"
    text="${text//127.0.0.1:4318/127.0.0.1:$status_port}"
    text="${text//127.0.0.1:4319/127.0.0.1:$codexd_port}"
    text="${text//task_demo/$task_demo}"
    text="${text//run_demo/$run_demo}"
    text="${text//sched_demo/$sched_demo}"
    printf '{\n%s\n} >%q 2>&1 </dev/null\n' "$text" "$d/$n.out" >>"$driver"
  done
  # A block's exit status is not checked (curl -s exits 0 on an HTTP error; what counts is
  # what it printed); running out of time is, by the blocks left without output.
  file_started=$SECONDS
  rc=0
  (cd "$home" && timeout "$file_timeout" bash "$driver" >"$d/driver.out" 2>&1) || rc=$?
  [ "$rc" != 124 ] || echo "docs-blocks: $f: its blocks did not all end within ${file_timeout}s" >&2
  echo "docs-blocks: $f: $((SECONDS - file_started)) s"
  for n in $(seq 1 "$(count "$d")"); do
    meta="$d/$n.meta"
    grep -q '^expect ' "$meta" || continue
    ran=$((ran + 1))
    line="$(head -n 1 "$meta")"
    missing=""
    while IFS= read -r want; do
      want="${want#expect }"
      want="${want//127.0.0.1:4317/127.0.0.1:$conductor_port}"
      want="${want//127.0.0.1:4318/127.0.0.1:$status_port}"
      want="${want//127.0.0.1:4319/127.0.0.1:$codexd_port}"
      grep -qF -- "$want" "$d/$n.out" 2>/dev/null || missing="$missing"$'\n'"  expected: $want"
    done < <(grep '^expect ' "$meta")
    if [ -n "$missing" ]; then
      failed=$((failed + 1))
      echo "docs-blocks: FAIL $f:$line:$missing" >&2
      echo "--- the block ---" >&2; cat "$d/$n.sh" >&2
      echo "--- its output ---" >&2; head -c 3000 "$d/$n.out" >&2 2>/dev/null || echo "(none: it did not run)" >&2
      echo "---" >&2
    fi
  done
  # A file that paused or drained leaves the next one running.
  curl -s -X POST "$api/v1/system/resume" -H 'Content-Type: application/json' \
    -d '{"requested_by":"docs-blocks","reason":"next file"}' >/dev/null || true
done
echo "docs-blocks: $ran block(s) run, $failed failed, $skipped skipped (marked), ${#files[@]} file(s)"
# The status doc's field list against this stack's real response.
python3 scripts/status-shape.py --check "http://127.0.0.1:$status_port/v1/status" || failed=$((failed + 1))
[ "$failed" = 0 ]
