"""Check that a prototype keeps the slow-client rule: a client that never reads is closed with 1008.

    (cd /tmp/chatproto-fast && python server.py --port 8830 --rate-limit 0 --send-buffer-limit 262144 > /tmp/slow.log) &
    .venv/bin/python bench/experiments/slow_client_check.py 8830; grep ws.slow_consumer /tmp/slow.log

A raw client handshakes into room "slow" and never reads; a sender sends 3,000 messages of 4 kB.
(The sender itself may be dropped too: it does not read its echoes while sending.)
"""

import asyncio, base64, os, socket, sys, json, time
from tornado.websocket import websocket_connect

port = int(sys.argv[1])


async def main():
    # a raw client that handshakes and then never reads
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /ws/chat/slow/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await asyncio.sleep(0.3)
    reader = await websocket_connect(f"ws://127.0.0.1:{port}/ws/chat/slow/")
    sender = await websocket_connect(f"ws://127.0.0.1:{port}/ws/chat/slow/")
    text = "x" * 4000
    got = 0

    async def read():
        nonlocal got
        while True:
            m = await reader.read_message()
            if m is None:
                return
            if json.loads(m).get("type") == "message":
                got += 1

    t = asyncio.ensure_future(read())
    for i in range(3000):
        await sender.write_message(json.dumps({"message": f"{i}:{text}"}))
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    await asyncio.sleep(2)
    print("reader got", got, "of 3000")
    t.cancel()
    reader.close()
    sender.close()
    s.close()


asyncio.run(main())
