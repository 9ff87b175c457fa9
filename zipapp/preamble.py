"""Runs in every zipapp once shiv has unpacked it, before the entry point (build.sh: shiv --preamble).

- On another Python than the build's, it stops with one line: the bundled compiled dependencies (grpcio,
  cffi, ...) would otherwise fail to import, deep in a traceback.
- It removes what other builds of the same zipapp (same file name, another build id) left unpacked in the
  shiv root (SHIV_ROOT, else ~/.shiv). A running process holds a shared lock on its own unpacked copy for
  as long as it runs, so a copy still in use is left alone.

shiv runs this file with the globals archive (the zipapp's path), env and site_packages. It runs under
whatever Python was asked to run the zipapp, so it keeps to what every Python 3 has.
"""

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path

IN_USE = "in-use.lock"


def stop(prog, message):
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.exit(1)


def check_python(prog, built):
    """Stop unless this interpreter is of the implementation and minor version the zipapp was built with."""
    running = platform.python_implementation(), "{}.{}".format(*sys.version_info[:2])
    if running != (built["implementation"], built["python"]):
        stop(
            prog,
            f"built for {built['implementation']} {built['python']}, but run by {running[0]} "
            f"{platform.python_version()} ({sys.executable}); run it with python{built['python']}",
        )


def hold(unpacked):
    """Share-lock this process's unpacked copy until it exits (forked workers keep the lock).

    False where the lock file cannot be made: a root this user may not write to, as in the image, where
    nothing is removed either.
    """
    try:
        fd = os.open(unpacked / IN_USE, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        return False
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits while another process removes this copy; the fd stays open
    return True


@contextlib.contextmanager
def locked(path):
    """An exclusive lock on path, or BlockingIOError at once if anyone holds one."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def remove_other_builds(root, name, own_build):
    """Remove the unpacked copies of other builds of NAME in root, with shiv's lock and temporary files.

    shiv unpacks build B of NAME into NAME_B (through NAME_B.tmp, under the lock file .NAME_B_lock).
    A copy that is being unpacked or is in use stays.
    """
    pattern = re.compile(r"\.?" + re.escape(name) + r"_([0-9a-f]{64})(\.tmp|_lock)?\Z")
    builds = {match.group(1) for match in map(pattern.match, os.listdir(root)) if match}
    for build in sorted(builds - {own_build}):
        unpacked = root / f"{name}_{build}"
        shiv_lock = root / f".{unpacked.name}_lock"
        trash = root / f"{unpacked.name}.tmp"
        try:
            with locked(shiv_lock):
                shutil.rmtree(trash, ignore_errors=True)
                if unpacked.is_dir():
                    with locked(unpacked / IN_USE):
                        unpacked.rename(trash)  # gone at once: a copy is never left half removed
                shutil.rmtree(trash, ignore_errors=True)
                shiv_lock.unlink()
        except OSError:  # in use, being unpacked, or not this user's to remove
            continue


def main(archive, site_packages):
    prog = Path(archive).stem
    check_python(prog, json.loads((site_packages / "bin" / "zipapp.json").read_text()))
    unpacked = site_packages.parent
    held = hold(unpacked)
    if not site_packages.is_dir():
        stop(prog, f"its unpacked copy in {unpacked.parent} was removed while it started; run it again")
    if held:
        name = Path(archive).resolve().name  # as shiv names the copy: NAME_BUILD
        remove_other_builds(unpacked.parent, name, unpacked.name[len(name) + 1 :])


if __name__ == "__main__":
    main(globals()["archive"], globals()["site_packages"])  # given by shiv
