"""The lock files (scripts/lock.sh): every pin hashed, setup.cfg's requirements met, one version of each
distribution across them, and the Python they are for the image's."""

import configparser
import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.M)


def pins(lock_name):
    """{canonical name: version} of a lock file; every pin must carry hashes."""
    text = (ROOT / lock_name).read_text()
    found = {canonicalize_name(name): version for name, version, _hashes in PIN.findall(text)}
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(found) == len(requirement_lines), f"{lock_name}: a requirement without ==version and hashes"
    return found


def setup_cfg_requirements(*sections):
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = []
    for section, option in sections:
        lines += config[section][option].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def assert_meets(requirements, locked):
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not locked: run scripts/lock.sh"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{requirement} is locked at {locked[name]}: run scripts/lock.sh"
        )


def test_the_bundle_lock_meets_install_requires():
    assert_meets(setup_cfg_requirements(("options", "install_requires")), pins("requirements.lock"))


def test_the_dev_lock_meets_the_test_and_lint_extras():
    extras = setup_cfg_requirements(("options.extras_require", "test"), ("options.extras_require", "lint"))
    assert_meets(extras, pins("requirements-dev.lock"))


def test_the_build_lock_meets_requirements_build_in():
    lines = (ROOT / "requirements-build.in").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert_meets(requirements, pins("requirements-build.lock"))


def test_the_dev_lock_has_the_versions_of_the_other_two():
    dev = pins("requirements-dev.lock")
    for lock_name in ("requirements.lock", "requirements-build.lock"):
        locked = pins(lock_name)
        assert {name: dev.get(name) for name in locked} == locked, lock_name


def test_the_locks_are_for_the_python_of_the_image():
    froms = re.findall(r"^FROM python:(\d+\.\d+)-slim\b", (ROOT / "Dockerfile").read_text(), re.M)
    target = re.search(r"^TARGET_PYTHON=(\S+)$", (ROOT / "scripts" / "lock.sh").read_text(), re.M).group(1)
    assert froms and set(froms) == {target}
