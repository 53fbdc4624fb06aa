"""CPU of the reader's per-frame work (cut_frame + take_frame) on one 77-byte masked text frame, in a tree.

    .venv/bin/python bench/experiments/reader_micro.py TREE     (a tree exported with git archive)

Works on trees with handlers/frame_reader.py (before) or handlers/websocket/reader.py (after);
``_handle_message`` is a no-op, so only the reader's own work is timed (best of 7 x 200,000).
"""

import os, sys, timeit
from types import SimpleNamespace

tree = sys.argv[1]
sys.path.insert(0, tree)
if os.path.exists(f"{tree}/handlers/websocket/reader.py"):
    from handlers.websocket import reader as r
    from handlers.websocket.rfc6455 import TextCheck

    extra = (TextCheck(),)
else:
    from handlers import frame_reader as r

    extra = ()
from tornado.websocket import WebSocketProtocol13

payload = b'{"message": "hello there, how are you doing today?", "client_id": "c-123456"}'
mask = os.urandom(4)
frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
p = SimpleNamespace(
    OPCODE_MASK=0x0F,
    RSV_MASK=0x70,
    FIN=0x80,
    _fragmented_message_buffer=None,
    params=SimpleNamespace(max_message_size=65536),
    _handle_message=lambda o, d: None,
)


def one():
    f = r.cut_frame(p, frame, 0)
    r.take_frame(p, f, *extra)


n = 200000
best = min(timeit.repeat(one, number=n, repeat=7)) / n * 1e6
print(f"{tree}: cut_frame + take_frame of a {len(payload)}-byte text frame: {best:.3f} us")
