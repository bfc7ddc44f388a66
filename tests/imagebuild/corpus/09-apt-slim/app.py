"""What runs under tini."""

import platform

print("slim", platform.machine())
