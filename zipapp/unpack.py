"""Unpacks built zipapps ahead of their first run, every module compiled, as the image's build does:

    python3 -I zipapp/unpack.py SHIV_ROOT SERVICE.pyz [OTHER.pyz ...]

The first zipapp unpacks itself into SHIV_ROOT (its --help, with shiv's SHIV_COMPILE_PYC). The others come
from the same build: the same files, so the same build id. Each gets a symbolic link, under the name shiv
looks for (NAME_BUILDID), to the first one's copy, instead of a copy of its own.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path


def build_id(pyz):
    with zipfile.ZipFile(pyz) as archive:
        return json.loads(archive.read("environment.json"))["build_id"]


def main(root, first, *others):
    root, first = Path(root), Path(first)
    build = build_id(first)
    env = {**os.environ, "SHIV_ROOT": str(root), "SHIV_COMPILE_PYC": "1"}
    subprocess.run([sys.executable, "-I", str(first), "--help"], env=env, stdout=subprocess.DEVNULL, check=True)
    unpacked = f"{first.name}_{build}"
    for pyz in map(Path, others):
        if build_id(pyz) != build:
            sys.exit(f"unpack: {pyz} is of another build than {first}")
        (root / f"{pyz.name}_{build}").symlink_to(unpacked)


if __name__ == "__main__":
    main(*sys.argv[1:])
