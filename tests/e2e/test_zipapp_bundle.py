"""What build.sh bundles into each zipapp: exactly the distributions and versions requirements.lock pins,
and the project itself."""

import email.parser
import zipfile

from packaging.utils import canonicalize_name

from tests.unit.test_locks import pins
from token_exchange import __version__


def bundled_distributions(pyz):
    """{canonical name: version} from the METADATA of every distribution in the zipapp's site-packages."""
    with zipfile.ZipFile(pyz) as archive:
        found = {}
        for name in archive.namelist():
            top, _, rest = name.partition("/")
            if top == "site-packages" and rest.count("/") == 1 and rest.endswith(".dist-info/METADATA"):
                metadata = email.parser.BytesHeaderParser().parsebytes(archive.read(name))
                found[canonicalize_name(metadata["Name"])] = metadata["Version"]
        return found


def test_each_zipapp_bundles_exactly_the_locked_versions(built_zipapps):
    expected = {**pins("requirements.lock"), "token-exchange": __version__}
    for pyz in built_zipapps.values():
        assert bundled_distributions(pyz) == expected, pyz
