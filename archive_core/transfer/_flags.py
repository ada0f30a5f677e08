"""Open flags the copy code uses, 0 where this platform does not have them (so OR-ing is safe)."""

from __future__ import annotations

import os

O_DIRECT = getattr(os, "O_DIRECT", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOCTTY = getattr(os, "O_NOCTTY", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_TMPFILE = getattr(os, "O_TMPFILE", 0)
