#!/usr/bin/env bash
# The supply-chain step of the test command (tests/run.sh runs it before starting the emulator):
# cargo-deny checks Cargo.lock's whole crate graph — RustSec advisories, licences, bans, sources —
# against deny.toml, offline, with the RustSec advisory database snapshot at ../shared/advisory-db.
# Any unignored advisory, disallowed licence, wildcard requirement or foreign source fails it.
#
# cargo-deny (pinned below) is built from crates.io into ./.tools once, and again only when the
# pinned version changes; that takes about 5 minutes on a 2-core machine.
#
# Usage: bash tests/supply-chain.sh
#   NOTIFY_ADVISORY_DB=/path/to/advisory-db bash tests/supply-chain.sh   # another snapshot
set -euo pipefail
cd "$(dirname "$0")/.."

deny_version=0.20.2
tools=.tools
deny="$tools/bin/cargo-deny"
snapshot=${NOTIFY_ADVISORY_DB:-../shared/advisory-db}
canary=tests/supply-chain/canary

say() { echo "tests/supply-chain.sh: $*" >&2; }

# 1. cargo-deny, at the pinned version, with its own locked dependencies.
if [[ "$("$deny" --version 2>/dev/null || true)" != "cargo-deny $deny_version" ]]; then
  say "installing cargo-deny $deny_version into $tools (a few minutes, once)"
  env -u CARGO_TARGET_DIR cargo install cargo-deny --locked --version "$deny_version" --root "$tools" --force --quiet
fi

# 2. The advisory database. cargo-deny reads it only from a git repository, at a path derived from
#    the database's URL under `db-path` (deny.toml: $NOTIFY_ADVISORY_DBS); the snapshot is a plain
#    copy without history, so a one-commit repository is built from it for each run, in the
#    directory cargo-deny $deny_version uses for the default RustSec URL. Nothing is fetched
#    (--offline): the check sees exactly the snapshot.
if [[ ! -f "$snapshot/SNAPSHOT" || ! -d "$snapshot/crates" ]]; then
  say "no advisory database snapshot at $snapshot (expected its SNAPSHOT file and crates/)"
  exit 1
fi
# "snapshot <commit> (YYYY-MM-DD)": the date the copy was taken.
snapshot_date=$(sed -n 's/.*(\([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\)).*/\1/p' "$snapshot/SNAPSHOT" | head -n1)
if [[ -z "$snapshot_date" ]]; then
  say "cannot read the snapshot's date from $snapshot/SNAPSHOT: $(head -n1 "$snapshot/SNAPSHOT")"
  exit 1
fi

dbs=$(mktemp -d)
trap 'rm -rf "$dbs"' EXIT
db="$dbs/advisory-db-3157b0e258782691" # cargo-deny's directory for the default database URL
cp -R "$snapshot" "$db"
chmod -R u+w "$db" # CI's copy of shared/ has no write bits
rm -rf "$db/.git"
# The commit, and the HEAD file whose time cargo-deny also reads, carry the snapshot's date, so
# that deny.toml's maximum-db-staleness is measured from the snapshot, not from this run.
stamp="${snapshot_date}T00:00:00Z"
(
  cd "$db"
  export GIT_AUTHOR_NAME=snapshot GIT_AUTHOR_EMAIL=snapshot@localhost GIT_AUTHOR_DATE="$stamp"
  export GIT_COMMITTER_NAME=snapshot GIT_COMMITTER_EMAIL=snapshot@localhost GIT_COMMITTER_DATE="$stamp"
  export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
  git init --quiet --initial-branch=main
  git add --all
  git commit --quiet --no-gpg-sign --message "$(head -n1 SNAPSHOT)"
)
touch -d "$stamp" "$db/.git/HEAD"

# 3. The crates themselves (cargo-deny reads their manifests and licence files; with --offline it
#    cannot download them).
cargo fetch --locked --quiet
cargo fetch --locked --quiet --manifest-path "$canary/Cargo.toml"

check() { NOTIFY_ADVISORY_DBS="$dbs" "$deny" --offline --locked --color never "$@"; }

# 4. The canary first: a lock file with a known vulnerability must fail the advisory check, or
#    the database was not read (moved, empty, or in another place than cargo-deny looks).
if canary_out=$(check --manifest-path "$canary/Cargo.toml" check --hide-inclusion-graph advisories 2>&1); then
  say "the advisory check passed $canary, which has a known vulnerability: is the database read?"
  echo "$canary_out" >&2
  exit 1
elif ! grep -q "RUSTSEC-2021-0003" <<<"$canary_out"; then
  say "the advisory check failed on $canary, but not for RUSTSEC-2021-0003:"
  echo "$canary_out" >&2
  exit 1
fi

# 5. The workspace: every check. Warnings (two versions of one crate, say) are printed without
#    failing; errors fail the run.
say "cargo deny check (advisory database: $(head -n1 "$snapshot/SNAPSHOT"))"
if ! check check --hide-inclusion-graph advisories bans licenses sources; then
  say "the supply-chain check failed (above); see README.md, \"Supply chain\""
  exit 1
fi
