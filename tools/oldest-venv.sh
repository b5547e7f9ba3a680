#!/usr/bin/env bash
# The oldest versions pyproject.toml allows, installed into one venv: the oldest Python it names and the
# lowest release of every direct dependency (uv's --resolution lowest-direct; what those need comes at
# its newest release that fits). `make test-oldest` runs the tests there, so that a floor in
# pyproject.toml is a checked promise, not a guess: torch 2.4 on Python 3.10 found four floors too low.
#   bash tools/oldest-venv.sh [VENV]      (default .venv-oldest; OLDEST_PY=python3.10 picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-oldest}
want=$(sed -n 's/^requires-python = ">=\([0-9.]*\)".*/\1/p' pyproject.toml)
py=""  # the first that runs and is Python $want: OLDEST_PY, python$want on PATH (a pyenv shim may not run), pyenv's
for cand in ${OLDEST_PY:-} "python$want" $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/python 2>/dev/null | sort -V -r); do
  if [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then py=$cand; break; fi
done
if [ -z "$py" ]; then  # the releases are still the oldest allowed; only the interpreter is newer: said, not hidden
  py=python3
  echo "tools/oldest-venv.sh: no Python $want found (set OLDEST_PY=/path/to/python$want): the oldest releases on $($py --version) instead" >&2
fi
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q uv
"$venv/bin/uv" pip install -q --python "$venv/bin/python" --resolution lowest-direct -e '.[test,search]'
# what it resolved to, for the record (README "Tests" and the session notes quote this line)
"$venv/bin/python" - <<'EOF'
import platform
from importlib.metadata import version
names = ["torch", "torchvision", "numpy", "hydra-core", "omegaconf", "mlflow", "pandas", "scipy", "matplotlib",
         "tabulate", "submitit", "filelock", "sqlalchemy", "hydra-optuna-sweeper", "optuna", "pytest"]
print("oldest: Python " + platform.python_version() + ", " + ", ".join(f"{n} {version(n)}" for n in names))
EOF
touch "$venv/.installed"
