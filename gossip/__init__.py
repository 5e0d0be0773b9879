"""The wire between nodes.

- the secure channel: Noise XX (``noise``) bound to torv identities with the
  network key as prologue (``handshake``), length-prefixed frames
  (``framing``), and a trio stream over an established session (``channel``);
- wire messages with strict decoders (``wire``);
- the pure cores the node drives: the GossipSub-style router (``router``)
  and feed sync with its gap buffer (``sync``).

Peer sessions (the trio drivers of router and sync) come next (issue 3).
"""

from .channel import HANDSHAKE_TIMEOUT, SecureStream, secure_handshake
from .handshake import NETWORK_KEY_SIZE, HandshakeFailed, Session, TorvHandshake
from .router import Delivery, Router, RouterParams, RouterStats, Verdict
from .sync import GapBuffer, SyncPlanner, answer, replication_scope
from .wire import BadMessage, WireMessage, decode_message_untrusted, encode_message

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "NETWORK_KEY_SIZE",
    "BadMessage",
    "Delivery",
    "GapBuffer",
    "HandshakeFailed",
    "Router",
    "RouterParams",
    "RouterStats",
    "SecureStream",
    "Session",
    "SyncPlanner",
    "TorvHandshake",
    "Verdict",
    "WireMessage",
    "answer",
    "decode_message_untrusted",
    "encode_message",
    "replication_scope",
    "secure_handshake",
]
