"""zipapp/preamble.py, which every zipapp runs before its entry point: the Python check and the removal of
what other builds left unpacked (the built zipapps running it: tests/e2e/test_zipapp_preamble.py)."""

import fcntl
import importlib.util
import json
import os
import platform
import shutil
import sys

import pytest

from tests.support import ROOT

spec = importlib.util.spec_from_file_location("zipapp_preamble", ROOT / "zipapp" / "preamble.py")
preamble = importlib.util.module_from_spec(spec)
spec.loader.exec_module(preamble)

NAME = "tool.pyz"
OWN, OLD, OLDER = "a" * 64, "b" * 64, "c" * 64
THIS_PYTHON = {"implementation": platform.python_implementation(), "python": "{}.{}".format(*sys.version_info[:2])}


def unpack(root, build, name=NAME):
    """What shiv leaves for one build: NAME_BUILD/site-packages and the lock file .NAME_BUILD_lock."""
    unpacked = root / f"{name}_{build}"
    (unpacked / "site-packages" / "bin").mkdir(parents=True)
    (unpacked / "site-packages" / "bin" / "zipapp.json").write_text(json.dumps(THIS_PYTHON))
    (root / f".{unpacked.name}_lock").touch()
    return unpacked


def flock(path, operation):
    fd = os.open(path, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(fd, operation)
    return fd


def test_the_python_it_was_built_with_passes():
    preamble.check_python("tool", THIS_PYTHON)


@pytest.mark.parametrize(
    "built",
    [{**THIS_PYTHON, "python": "3.99"}, {**THIS_PYTHON, "implementation": "OtherPython"}],
    ids=["another-minor", "another-implementation"],
)
def test_another_python_stops_with_one_line_naming_both(built, capsys):
    with pytest.raises(SystemExit) as stopped:
        preamble.check_python("tool", built)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        f"tool: error: built for {built['implementation']} {built['python']}, but run by "
        f"{platform.python_implementation()} {platform.python_version()} ({sys.executable}); "
        f"run it with python{built['python']}\n"
    )


def test_other_builds_are_removed_with_their_lock_and_temporary_files(tmp_path):
    own = unpack(tmp_path, OWN)
    unpack(tmp_path, OLD)
    (tmp_path / f"{NAME}_{OLD}.tmp" / "site-packages").mkdir(parents=True)  # an unpacking cut short
    (tmp_path / f"{NAME}_{OLDER}.tmp").mkdir()  # the same, of a build never unpacked whole
    preamble.remove_other_builds(tmp_path, NAME, OWN)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([own.name, f".{own.name}_lock"])
    assert (own / "site-packages" / "bin" / "zipapp.json").exists()


def test_other_zipapps_and_other_files_are_left_alone(tmp_path):
    kept = [
        unpack(tmp_path, OLD, name="other.pyz"),  # another zipapp's build
        unpack(tmp_path, OLD, name=f"x{NAME}"),  # a name that only ends like this one
        tmp_path / f"{NAME}_notabuildid",
        tmp_path / f"{NAME}_{OLD}.keep",
    ]
    kept[2].mkdir()
    kept[3].mkdir()
    preamble.remove_other_builds(tmp_path, NAME, OWN)
    assert all(path.exists() for path in kept)


def test_a_copy_in_use_stays_until_its_process_lets_go(tmp_path):
    old = unpack(tmp_path, OLD)
    fd = flock(old / preamble.IN_USE, fcntl.LOCK_SH)  # as hold() takes it in a process running the old build
    try:
        preamble.remove_other_builds(tmp_path, NAME, OWN)
        assert (old / "site-packages").is_dir()
    finally:
        os.close(fd)
    preamble.remove_other_builds(tmp_path, NAME, OWN)
    assert not old.exists()


def test_a_copy_being_unpacked_stays(tmp_path):
    unpacking = tmp_path / f"{NAME}_{OLD}.tmp"
    (unpacking / "site-packages").mkdir(parents=True)
    fd = flock(tmp_path / f".{NAME}_{OLD}_lock", fcntl.LOCK_EX)  # as shiv holds it while it unpacks
    try:
        preamble.remove_other_builds(tmp_path, NAME, OWN)
        assert (unpacking / "site-packages").is_dir()
    finally:
        os.close(fd)
    preamble.remove_other_builds(tmp_path, NAME, OWN)
    assert not unpacking.exists()


def test_a_copy_removed_while_it_started_stops_with_one_line(tmp_path, monkeypatch, capsys):
    own = unpack(tmp_path, OWN)
    real_hold = preamble.hold

    def removed_first(unpacked):
        shutil.rmtree(unpacked)  # another build's cleanup got there between shiv's look and the lock
        return real_hold(unpacked)

    monkeypatch.setattr(preamble, "hold", removed_first)
    with pytest.raises(SystemExit) as stopped:
        preamble.main(str(tmp_path / NAME), own / "site-packages")
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (
        f"tool: error: its unpacked copy in {tmp_path} was removed while it started; run it again\n"
    )


def test_main_holds_its_copy_and_removes_the_others(tmp_path):
    own = unpack(tmp_path, OWN)
    old = unpack(tmp_path, OLD)
    preamble.main(str(tmp_path / NAME), own / "site-packages")
    assert not old.exists()
    # This process now holds its copy: no exclusive lock can be had on it.
    with pytest.raises(BlockingIOError):
        flock(own / preamble.IN_USE, fcntl.LOCK_EX | fcntl.LOCK_NB)
