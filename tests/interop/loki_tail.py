"""A Loki tail client (the `websockets` library, as logcli and Grafana's
backend speak to /loki/api/v1/tail): prints every message received, and
how the connection ended, as one JSON document.

    loki_tail.py WS_URL [--token T] [--seconds S]
                 [--until-restart R --after K]   stop once K lines of restart R came
                 [--rcvbuf BYTES --pause S --read-delay S]   a slow client
"""

import argparse
import asyncio
import json
import socket
import time
import urllib.parse

import websockets


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--token")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--until-restart", type=int)
    p.add_argument("--after", type=int, default=1)
    p.add_argument("--rcvbuf", type=int)
    p.add_argument("--pause", type=float, default=0)
    p.add_argument("--read-delay", type=float, default=0)
    a = p.parse_args()

    headers = {"Authorization": f"Bearer {a.token}"} if a.token else None
    sock = None
    if a.rcvbuf:
        # A small receive buffer: the server's writes block soon after the
        # client stops reading, as with a client on a slow link.
        u = urllib.parse.urlparse(a.url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        sock.connect((u.hostname, u.port))
    messages = []
    closed = None
    deadline = time.monotonic() + a.seconds
    try:
        async with websockets.connect(
            a.url,
            additional_headers=headers,
            sock=sock,
            max_size=None,
            max_queue=1,
            ping_interval=None,
        ) as ws:
            if a.pause:
                await asyncio.sleep(a.pause)
            seen = 0
            while time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                m = json.loads(raw)
                m["received_at"] = time.time()
                messages.append(m)
                if a.until_restart is not None:
                    for s in m.get("streams") or []:
                        labels = s["stream"]
                        if "sluice_notice" not in labels and labels.get("restart") == str(a.until_restart):
                            seen += len(s["values"])
                    if seen >= a.after:
                        break
                if a.read_delay:
                    await asyncio.sleep(a.read_delay)
    except websockets.ConnectionClosed as e:
        closed = {"code": e.rcvd.code if e.rcvd else None, "reason": e.rcvd.reason if e.rcvd else ""}
    except websockets.InvalidStatus as e:
        closed = {"status": e.response.status_code, "body": e.response.body.decode("utf-8", "replace")}
    print(json.dumps({"messages": messages, "closed": closed}))


asyncio.run(main())
