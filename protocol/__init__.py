"""The contract every AURA ONE part speaks: message types, codes, framing and errors."""

PROTOCOL_VERSION = 1
