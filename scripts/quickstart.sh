#!/usr/bin/env bash
# Set up, build and test "Why ChatGPT wins" on a fresh machine (the README's Quickstart).
#
#   bash scripts/quickstart.sh book   # build the book (every notebook executed) into _build/html
#   bash scripts/quickstart.sh test   # run the whole test suite, notebooks included (nbval)
#
# Each command creates the virtual environment .venv (reused when present; override with
# NERBOOK_VENV=DIR and PYTHON=python3.11), installs torch==2.13.0 first, then nerbook with the
# pinned versions of constraints.txt, and runs offline (HF_HUB_OFFLINE=1) unless
# NERBOOK_PROFILE=full. Extra arguments go to jupyter-book or pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

TORCH_VERSION=2.13.0
VENV=${NERBOOK_VENV:-.venv}
PYTHON=${PYTHON:-python3}

setup_venv() {  # $1: the extra to install (book or dev)
    local extra=$1
    if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        echo "quickstart: creating $VENV with $("$PYTHON" --version 2>&1)"
        "$PYTHON" -m venv "$VENV"
    fi
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    # Reinstall only when what we install changed (pyproject.toml, constraints.txt, the extra).
    local stamp="$VENV/.nerbook-$extra.stamp" want
    want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) torch==$TORCH_VERSION"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "quickstart: $VENV is up to date (.[${extra}])"
        return
    fi
    # torch first, as a plain pip install of the exact version, so that nothing below pulls in
    # another build of it.
    # --no-compile, then compileall on every core: pip byte-compiles the installed files one at a
    # time, which took half of the install (measured on a 2-core machine, 2026-12-01: 151 s with
    # pip compiling, 76 s without plus 34 s for compileall -j 0). The .pyc files are the same;
    # without them, a machine with PYTHONDONTWRITEBYTECODE would compile torch at every start.
    python -m pip install --no-compile "torch==$TORCH_VERSION"
    python -m pip install --no-compile -c constraints.txt -e ".[$extra]"
    # -qq: like pip, skip files that do not compile (some packages ship such test data)
    python -m compileall -qq -j 0 "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
    python -m pip check
    python -c "import torch, sys; v = torch.__version__.split('+')[0]; \
sys.exit(0 if v == '$TORCH_VERSION' else f'torch {torch.__version__} installed, want $TORCH_VERSION')"
    echo "$want" > "$stamp"
}

offline_unless_full() {
    if [[ "${NERBOOK_PROFILE:-offline}" != "full" ]]; then
        export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
    fi
    export TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
    # Why the book once took 23 min instead of 8: torch's CPU kernels run on GNU OpenMP, one
    # thread per core, and by default a thread that waits at the end of a parallel region spins.
    # With anything else running on the same cores (another build, a test run, a browser), the
    # spinning threads take the CPU from the thread that still has work, so every small op
    # waits. Measured with bench/omp_wait_policy.py on a 2-core machine (2026-11-29): 10 training
    # steps of a 4-layer BERT took 5.0 s alone either way, but beside one busy process 13.4 s
    # spinning vs 8.2 s sleeping (14.6 vs 7.5 s beside two); and in two fresh-clone builds
    # beside other work the lora chapter's training cell ran past the 300 s cell limit, while
    # with PASSIVE the same chapter took 139 s. A value you set yourself is kept.
    export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
    book)
        setup_venv book
        offline_unless_full
        # Execute the notebooks first, two at a time (NERBOOK_BOOK_WORKERS), into the cache the
        # build reads: jupyter-book runs them one after another, and a chapter keeps about one
        # core busy. The build below then finds them all in _build/.jupyter_cache.
        python scripts/execute_book.py -j "${NERBOOK_BOOK_WORKERS:-2}"
        # --all re-reads every page, so that a warning from a page unchanged since the last
        # build still fails this one (notebook outputs stay cached in _build/.jupyter_cache,
        # keyed on the code). -W: any warning fails; --keep-going: report them all first.
        jupyter-book build --all . -W --keep-going "$@"
        test -s _build/html/index.html
        echo "quickstart: the book is in _build/html/index.html"
        ;;
    test)
        setup_venv dev
        offline_unless_full
        # Two workers (NERBOOK_TEST_WORKERS): a chapter keeps about one core busy, so two run
        # side by side in about half the time. --dist loadscope (pyproject addopts) keeps each
        # notebook's cells in one worker, in order, as nbval needs.
        python -m pytest -n "${NERBOOK_TEST_WORKERS:-2}" "$@"
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
