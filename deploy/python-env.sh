#!/usr/bin/env bash
# Creates (once per requirements file content) a Python venv outside the checkout and prints its path.
#   deploy/python-env.sh clients/requirements-test.txt
set -euo pipefail
req=${1:?usage: python-env.sh REQUIREMENTS_FILE}
cache=${VITALFLOW_CACHE:-$HOME/.cache/vitalflow}
python=${PYTHON:-python3}
hash=$( (cat "$req"; "$python" --version) | sha256sum | cut -c1-12)
venv="$cache/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  echo "python-env.sh: creating $venv from $req" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
