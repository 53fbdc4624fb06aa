"""The WebSocket connection past Tornado's public API, in one package.

Tornado does the handshake and the close handshake; this package reads and
writes frames itself, for speed and for what RFC 6455 asks that Tornado does
not check, and accepts connections itself. Every private Tornado name the
server uses is here, listed and checked in ``guard``; no module outside this
package may use one (tests/test_layout.py).

- ``reader``: the receive loop, frames cut out of whatever one read brought, run as callbacks
- ``rfc6455``: close codes, close payloads and UTF-8, each refused with its code
- ``writer``: text frames written straight to the socket
- ``control``: pings, pongs, closes and aborts of an open socket
- ``slots``: Tornado's per-connection attributes in slots; the handshake let go
- ``stream``: the stream's write queues, made only when a write has to queue
- ``accept``: the accept loop that pauses when descriptors run out
- ``guard``: what is relied on, and whether this Tornado still offers it
"""
