"""The service with every signature replaced by zero bytes of the same length.

Only for bench/cpu_per_request.py, which compares its CPU time per
exchange with the real service's to see what the signature costs inside
a request. Its tokens do not verify: never serve anything with it.

    python bench/service_without_signature.py [the service's flags]
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from token_exchange.cli import service as server
from token_exchange.signing import jws

_real_signature_function = jws._signature_function


def _zero_signature_function(alg, key):
    size = len(_real_signature_function(alg, key)(b"length of one signature"))
    zeros = bytes(size)
    return lambda signing_input: zeros


# Read when the service builds its signer, after this module has run.
jws._signature_function = _zero_signature_function

if __name__ == "__main__":
    server.main(sys.argv[1:])
