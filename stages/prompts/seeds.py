"""Seeds derived from a run seed and a position, so any single item can be regenerated on its own."""

from __future__ import annotations

import hashlib


def derive_seed(run_seed: int, *parts: object) -> int:
    """A 32-bit seed for one unit of work (a request, an image, a retry).

    Hashing instead of `run_seed + index` keeps nearby runs from sharing streams (run 0 image 1 would
    otherwise equal run 1 image 0), and 32 bits is what every consumer accepts (numpy's legacy seeding
    included) while collisions stay negligible at the dataset sizes of this method.
    """
    text = "/".join([str(int(run_seed)), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")
