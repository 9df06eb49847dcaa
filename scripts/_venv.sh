# Sourced by the other scripts: make .venv (once) and install the project with
# the extras named in $EXTRAS, again whenever pyproject.toml changes.
# Needs only python3 (3.10 or newer) on the PATH.
set -euo pipefail
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.installed-${EXTRAS}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${EXTRAS}]" 2>&1 \
        | { grep -v -e BuildBackendWarning -e 'WARNING: Location' -e '^ ' || true; }
    touch "$stamp"
fi
