"""Rejecting Ed25519 public keys that anybody can sign for.

OpenSSL verifies signatures under a public key of small order (the identity
point, for one) for which a fixed signature verifies over *any* message. Such
a key would be a feed that anyone can write to and fork. Implementations
disagree on whether to accept them (libsodium refuses), so torv refuses them
everywhere: a valid author key is the canonical encoding of a point on the
curve whose order is not a divisor of 8.

The check decodes the point as RFC 8032 section 5.1.3 describes and
multiplies it by 8 in projective coordinates with Python integers: about 30 us,
done once per author and cached.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

__all__ = ["is_weak_public_key"]

_P: Final = 2**255 - 19
_D: Final = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1: Final = pow(2, (_P - 1) // 4, _P)

Point = tuple[int, int]


def _decode(data: bytes) -> Point | None:
    """The point ``data`` encodes, or ``None`` if it is not a canonical encoding."""
    if len(data) != 32:
        return None
    number = int.from_bytes(data, "little")
    sign, y = number >> 255, number & ((1 << 255) - 1)
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (v * x * x - u) % _P != 0:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _times_8_is_identity(point: Point) -> bool:
    # Three doublings in projective coordinates (X : Y : Z), a = -1, so that
    # no modular inverse is needed; the identity is (0 : c : c).
    x, y, z = point[0], point[1], 1
    for _ in range(3):
        b = (x + y) ** 2 % _P
        c, d = x * x % _P, y * y % _P
        e = -c % _P
        f = (e + d) % _P
        j = (f - 2 * z * z) % _P
        x, y, z = (b - c - d) * j % _P, f * (e - d) % _P, f * j % _P
    return x == 0 and y == z


@lru_cache(maxsize=4096)
def is_weak_public_key(data: bytes) -> bool:
    """True if ``data`` is not a usable Ed25519 author key (not a canonical
    point encoding, or a point of small order)."""
    point = _decode(data)
    return point is None or _times_8_is_identity(point)
