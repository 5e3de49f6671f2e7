#!/usr/bin/env bash
# Installs sora_jax on every worker of the slice: code, Python 3.11 venv, `pip install -e ".[tpu]"`.
#
#   tpu/setup.sh [--git URL [--ref REF]] [--worker all|N] [config flags] [--dry-run | --local]
#
#   (default)     copy this checkout (tracked and untracked, not ignored files, uncommitted edits
#                 included) to every worker as a tarball
#   --git URL     clone URL on every worker instead (fetch and check out again when present)
#   --ref REF     branch, tag or commit to check out (--git only; default: the remote's HEAD)
#   --worker W    workers to set up (default all; e.g. 3 to redo one that failed)
#   config flags  --project --zone --name --repo-dir (see tpu/common.sh; env TPU_*)
#   TPU_PYTHON    interpreter to build the venv with (default python3.11; the TPU images are
#                 Ubuntu 22.04, whose python3 is 3.10, so python3.11 is installed with apt)
#
# Every worker ends by printing its JAX and libtpu versions. Re-running is safe: the venv is
# reused and pip only installs what changed.

# Worker-side code is written in single quotes on purpose: it expands on the worker, not here.
# shellcheck disable=SC2016,SC1003
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

GIT_URL=""
GIT_REF=""
WORKERS=all
PYTHON="${TPU_PYTHON:-python3.11}"
while (($#)); do
  case "$1" in
    --git) [[ $# -ge 2 ]] || die "--git needs a URL"; GIT_URL="$2"; shift 2 ;;
    --ref) [[ $# -ge 2 ]] || die "--ref needs a value"; GIT_REF="$2"; shift 2 ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; WORKERS="$2"; shift 2 ;;
    *) common_flag "$@"; shift "$COMMON_SHIFT" ;;
  esac
done
[[ -z "$GIT_REF" || -n "$GIT_URL" ]] || die "--ref needs --git"
show_config " repo_dir=$TPU_REPO_DIR source=${GIT_URL:-this checkout}"

ARCHIVE=sora_jax_code.tar.gz  # in each worker's home directory while it is unpacked

# Copies this checkout to the workers' home directories (or, with --local, to this one).
copy_checkout() {
  local archive
  archive="$(mktemp -d)/$ARCHIVE"
  if ((DRY_RUN)); then
    echo "# pack the checkout: git ls-files --cached --others --exclude-standard | tar -czf $archive"
  else
    git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard \
      | tar -czf "$archive" -C "$REPO_ROOT" --null -T -
    note "packed $(du -h "$archive" | cut -f1) of code"
  fi
  if ((LOCAL)); then
    run cp "$archive" "$HOME/$ARCHIVE"
  else
    location_flags
    run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:$ARCHIVE" "${LOCATION[@]}" --worker="$WORKERS"
  fi
}

# Worker-side: put the code in $repo.
code_script() {
  if [[ -n "$GIT_URL" ]]; then
    printf 'url=%q; ref=%q\n' "$GIT_URL" "$GIT_REF"
    printf '%s\n' \
      'if [ -d "$repo/.git" ]; then git -C "$repo" fetch --quiet --tags origin; else git clone --quiet "$url" "$repo"; fi' \
      '# A branch name means its fetched tip, not a local branch left behind by an earlier setup.' \
      'if [ -n "$ref" ] && git -C "$repo" rev-parse -q --verify "origin/$ref" >/dev/null; then ref="origin/$ref"; fi' \
      'git -C "$repo" checkout --quiet --detach "${ref:-origin/HEAD}"'
  else
    printf '%s\n' \
      "mkdir -p \"\$repo\" && tar -xzf \"\$HOME/$ARCHIVE\" -C \"\$repo\" && rm \"\$HOME/$ARCHIVE\""
  fi
}

# Worker-side: Python, venv, the package with its TPU extra, and a version report.
install_script() {
  printf 'python=%q\n' "$PYTHON"
  cat <<'EOF'
if ! command -v "$python" >/dev/null; then
  # A fresh TPU VM may still be running unattended upgrades: wait for the dpkg lock, do not fail.
  sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$python" "$python-venv"
fi
cd "$repo"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[tpu]"
versions='import importlib.metadata as m, sys; print(sys.version.split()[0], m.version("jax"), m.version("libtpu"))'
read -r python_version jax_version libtpu_version <<<"$(.venv/bin/python -c "$versions")"
echo "worker $worker: python $python_version, jax $jax_version, libtpu $libtpu_version"
EOF
}

# Worker-side: JAX warns that TPU runtime start-up and shutdown are much slower on v5e and newer
# without transparent huge pages. Not with --local: this machine's kernel settings stay as they are.
huge_pages_script() {
  ((LOCAL)) && return
  printf '%s\n' 'sudo -n sh -c "echo always > /sys/kernel/mm/transparent_hugepage/enabled" \' \
    '  || echo "worker $worker: could not enable transparent huge pages (no sudo)"'
}

if [[ -z "$GIT_URL" ]]; then
  copy_checkout
fi
on_workers "$WORKERS" "$(worker_prelude)
$(code_script)
$(huge_pages_script)
$(install_script)"
((DRY_RUN)) || note "next: tpu/run.sh --name $TPU_NAME --zone $TPU_ZONE -- sora-jax train ..."
