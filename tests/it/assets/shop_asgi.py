"""A small shop as an ASGI app, for racing a server racelab did not write
(hypercorn, over HTTP/1.1 and HTTP/2).

    hypercorn --bind 127.0.0.1:0 tests/it/assets/shop_asgi.py:app

Routes, per shop (`naive` or `locked`, e.g. /naive/purchase):
  POST /<shop>/purchase  body {"buyer": ...}: 201 bought, 409 sold out
  GET  /<shop>/stock     {"item": {"quantity": Q, "reservedQuantity": R}, "sold": S}
  POST /<shop>/reset     back to the initial stock
The stock on sale is quantity - reservedQuantity. `naive` reads it, awaits
(as a service awaits its database), then writes back what it read minus
one: concurrent buyers all see the same stock and it oversells. `locked`
does the same under an asyncio.Lock: safe. SHOP_STOCK (default 5) and
SHOP_RESERVED (default 2) set the initial quantity and reservation.
"""

import asyncio
import json
import os

QUANTITY = int(os.environ.get("SHOP_STOCK", "5"))
RESERVED = int(os.environ.get("SHOP_RESERVED", "2"))


class Shop:
    def __init__(self, locked):
        self.lock = asyncio.Lock() if locked else None
        self.reset()

    def reset(self):
        self.quantity = QUANTITY
        self.sold = 0

    async def buy(self):
        if self.lock is None:
            return await self._buy()
        async with self.lock:
            return await self._buy()

    async def _buy(self):
        available = self.quantity - RESERVED
        # The read and the write are apart, as with a database round trip.
        await asyncio.sleep(0.02)
        if available < 1:
            return False
        self.quantity = available - 1 + RESERVED
        self.sold += 1
        return True


SHOPS = {"naive": Shop(locked=False), "locked": Shop(locked=True)}


async def body_of(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def reply(send, status, doc):
    payload = json.dumps(doc).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    parts = scope["path"].strip("/").split("/")
    shop = SHOPS.get(parts[0]) if len(parts) == 2 else None
    method, action = scope["method"], parts[-1]
    body = await body_of(receive)
    if shop is None:
        return await reply(send, 404, {"error": "no such route"})
    if method == "POST" and action == "purchase":
        try:
            json.loads(body or b"{}")
        except ValueError as e:
            return await reply(send, 400, {"error": f"not JSON: {e}"})
        if await shop.buy():
            return await reply(send, 201, {"bought": 1})
        return await reply(send, 409, {"error": "sold out"})
    if method == "GET" and action == "stock":
        return await reply(send, 200, {
            "item": {"quantity": shop.quantity, "reservedQuantity": RESERVED},
            "sold": shop.sold,
        })
    if method == "POST" and action == "reset":
        shop.reset()
        return await reply(send, 200, {"reset": True})
    return await reply(send, 405, {"error": "method not allowed"})
