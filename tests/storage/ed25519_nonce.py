"""Ed25519 signing with a chosen nonce, from RFC 8032 section 5.1.6, for tests.

Standard signers derive the nonce from the key and the message, so a message
has one signature. An author with their own signer can pick any nonce and so
make a second valid signature over the same header; the store must treat the
result (same header, another id) as a fork. Slow and not constant-time: tests only.
"""

from __future__ import annotations

import hashlib

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_BASE = (
    15112221349535400772501151409588531511454012693041857206046113283949847762202,
    46316835694926478169428394003475163141307993866256225615783033603165251855960,
)

Point = tuple[int, int]


def _add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return (
        (x1 * y2 + y1 * x2) * pow(1 + t, _P - 2, _P) % _P,
        (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P,
    )


def _times(k: int, point: Point) -> Point:
    result: Point = (0, 1)
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _encode(point: Point) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def sign_with_nonce(seed: bytes, message: bytes, nonce: int) -> bytes:
    """An Ed25519 signature of ``message`` by the key with ``seed``, using ``nonce``."""
    digest = hashlib.sha512(seed).digest()
    a = int.from_bytes(digest[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    public = _encode(_times(a, _BASE))
    r = nonce % _L
    big_r = _encode(_times(r, _BASE))
    k = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % _L
    return big_r + ((r + k * a) % _L).to_bytes(32, "little")
