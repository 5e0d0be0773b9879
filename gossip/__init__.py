"""The wire between nodes.

So far: the secure channel. Noise XX (``noise``) bound to torv identities
with the network key as prologue (``handshake``), length-prefixed frames
(``framing``), and a trio stream over an established session (``channel``).
The gossip router, feed sync and peer sessions build on these (issue 3).
"""

from .channel import HANDSHAKE_TIMEOUT, SecureStream, secure_handshake
from .handshake import NETWORK_KEY_SIZE, HandshakeFailed, Session, TorvHandshake

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "NETWORK_KEY_SIZE",
    "HandshakeFailed",
    "SecureStream",
    "Session",
    "TorvHandshake",
    "secure_handshake",
]
