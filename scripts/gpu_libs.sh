#!/usr/bin/env bash
# Copy learn2learn (and what it imports: gym, gym_notices, cloudpickle, requests with its dependencies)
# and POT (`ot`; shared objects stripped of debug symbols, 177 MB -> ~9 MB in all) from this checkout's
# .venv into .gpu_libs/ (git-ignored), for a machine whose python3 has torch but neither library:
# MAML, FOMAML, Proto-MAML and DeepEMD then run there under `PYTHONPATH=.gpu_libs python3 ...` (the
# same CPython minor version as .venv, 3.11). `python -m bench.cost device` skips a method whose library does
# not import, so a mismatch costs only those rows.
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf .gpu_libs
mkdir -p .gpu_libs
for pkg in ot pot.libs learn2learn gym gym_notices cloudpickle requests certifi charset_normalizer idna urllib3; do
  if [ -e "$site/$pkg" ]; then cp -r "$site/$pkg" .gpu_libs/; fi
done
find .gpu_libs -name __pycache__ -prune -exec rm -rf {} +
find .gpu_libs -name '*.so*' -type f -exec strip --strip-unneeded {} +
du -sh .gpu_libs
