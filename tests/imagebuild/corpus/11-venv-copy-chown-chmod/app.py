"""Signs a value with the dependency the builder installed."""

import os

from itsdangerous import Signer

print("signed", os.getuid(), Signer("k").sign("v").decode())
