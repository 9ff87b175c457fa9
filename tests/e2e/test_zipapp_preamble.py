"""The built zipapps' preamble (zipapp/preamble.py): on another Python, one line and status 1; the unpacked
copies that other builds of a zipapp left in the shiv root are removed once no process uses them."""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from tests.support import plain_python
from tests.zipapp_service import (
    ZipappService,
    free_port,
    only_line,
    rewritten_zipapp,
    run_zipapp,
    zipapp_json,
)

ZIPAPP_JSON = "site-packages/bin/zipapp.json"


def this_python():
    return {"implementation": platform.python_implementation(), "python": "{}.{}".format(*sys.version_info[:2])}


def other_pythons():
    """Interpreters on PATH other than the build's: PyPy, and CPython of another minor version."""
    names = ["pypy3"] + [f"python3.{minor}" for minor in range(6, 20) if minor != sys.version_info.minor]
    found = {}
    for name in names:
        path = shutil.which(name)
        # A name on PATH may not run (a version manager's shim for a version not chosen).
        if path and subprocess.run([path, "-c", ""], capture_output=True).returncode == 0:
            found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


def test_the_zipapps_record_the_python_that_built_them(built_zipapps):
    for pyz in built_zipapps.values():
        assert zipapp_json(pyz, ZIPAPP_JSON) == this_python(), pyz


def test_another_python_stops_with_one_line(built_zipapps, tmp_path):
    others = other_pythons()
    if not others:
        pytest.skip("no other Python on PATH (pypy3, python3.X of another minor version)")
    built = this_python()
    for python in others:
        done = run_zipapp(built_zipapps["create-integration"], ["-h"], tmp_path, python=python)
        line = only_line(done, "create-integration")
        assert done.returncode == 1, python
        assert line.startswith(f"create-integration: error: built for {built['implementation']} {built['python']}, ")
        assert line.endswith(f"run it with python{built['python']}"), line


def test_a_zipapp_built_for_another_minor_version_stops_with_one_line(built_zipapps, tmp_path):
    # The zipapp as another minor version would have built it, as far as its record of that goes.
    built = {**this_python(), "python": f"3.{sys.version_info.minor + 1}"}
    pyz = rewritten_zipapp(
        built_zipapps["token-exchange"], tmp_path / "token-exchange.pyz", {ZIPAPP_JSON: json.dumps(built).encode()}
    )
    done = run_zipapp(pyz, ["-h"], tmp_path)
    assert done.returncode == 1
    assert only_line(done, "token-exchange") == (
        f"token-exchange: error: built for {built['implementation']} {built['python']}, but run by "
        f"{platform.python_implementation()} {platform.python_version()} ({plain_python()}); "
        f"run it with python{built['python']}"
    )


def test_a_newer_build_removes_an_older_copy_once_no_process_uses_it(built_zipapps, tmp_path, key_file, db_path):
    root = tmp_path / "shiv"
    env = {"SHIV_ROOT": str(root)}
    old = built_zipapps["token-exchange"]
    # The same zipapp under another build id is, to shiv, another build of it.
    environment = zipapp_json(old, "environment.json")
    environment["build_id"] = hashlib.sha256(b"another build").hexdigest()
    (tmp_path / "new").mkdir()
    new = rewritten_zipapp(old, tmp_path / "new" / old.name, {"environment.json": json.dumps(environment).encode()})

    assert run_zipapp(built_zipapps["generate-jwk"], ["-h"], tmp_path, env).returncode == 0  # another zipapp's copy
    port = free_port()
    args = ["-store", f"sqlite:{db_path}", "-private-key-path", key_file(), "-port", port]
    args += ["-prometheusx.listen-address", f"127.0.0.1:{free_port()}"]
    service = ZipappService(old, args, tmp_path, port, env).wait_healthy()
    try:
        unpacked = sorted(path.name for path in root.iterdir())
        assert len(unpacked) == 4  # each zipapp's copy and shiv's lock file for it
        assert run_zipapp(new, ["-h"], tmp_path, env).returncode == 0
        # The running service's copy stays beside the new one.
        assert sorted(path.name for path in root.iterdir()) == sorted(
            [*unpacked, f"{old.name}_{environment['build_id']}", f".{old.name}_{environment['build_id']}_lock"]
        )
        assert service.signal_and_wait() == 0, service.output()
    finally:
        service.stop()
    assert run_zipapp(new, ["-h"], tmp_path, env).returncode == 0
    remaining = sorted(path.name for path in root.iterdir())
    assert [name for name in remaining if name.lstrip(".").startswith("token-exchange.pyz_")] == [
        f".{old.name}_{environment['build_id']}_lock",
        f"{old.name}_{environment['build_id']}",
    ]
    assert len([name for name in remaining if name.lstrip(".").startswith("generate-jwk.pyz_")]) == 2
