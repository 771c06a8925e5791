"""A small shop for racelab's flow tests: logins (bearer token or session
cookie), a cart, a checkout, a buy-now, and a single-use voucher, written
with the SQLAlchemy ORM on PostgreSQL.

Every shop lives under /s/<shop>/ so that tests running at once each have
their own. POST /s/<shop>/reset sets it up: users, stock, a voucher, and
whether its writes are safe (SELECT ... FOR UPDATE before the write) or
not (read, think, write back what was read: lost updates).

Run: DATABASE_URL=postgresql://... python3 shop.py
Prints "listening on http://127.0.0.1:PORT" once it serves; exits when its
standard input closes (the test binary that started it is gone), dropping
its schema.
"""

import json
import os
import urllib.parse
import re
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import (Boolean, ForeignKey, Integer, String, create_engine,
                        delete, event, func, select, text)
from sqlalchemy.orm import (DeclarativeBase, Mapped, Session, mapped_column)

SCHEMA = f"shop_{os.getpid()}"


class Base(DeclarativeBase):
    pass


class Shop(Base):
    __tablename__ = "shops"
    name: Mapped[str] = mapped_column(String, primary_key=True)
    safe: Mapped[bool] = mapped_column(Boolean)
    auth: Mapped[str] = mapped_column(String)  # "bearer" or "cookie"
    think_ms: Mapped[int] = mapped_column(Integer)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop: Mapped[str] = mapped_column(String, index=True)
    name: Mapped[str] = mapped_column(String)
    password: Mapped[str] = mapped_column(String)


class Login(Base):
    __tablename__ = "logins"
    token: Mapped[str] = mapped_column(String, primary_key=True)
    shop: Mapped[str] = mapped_column(String)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class Product(Base):
    __tablename__ = "products"
    shop: Mapped[str] = mapped_column(String, primary_key=True)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stock: Mapped[int] = mapped_column(Integer)


class CartItem(Base):
    __tablename__ = "cart_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop: Mapped[str] = mapped_column(String, index=True)
    user_id: Mapped[int] = mapped_column(Integer)
    product: Mapped[int] = mapped_column(Integer)
    qty: Mapped[int] = mapped_column(Integer)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop: Mapped[str] = mapped_column(String, index=True)
    user_id: Mapped[int] = mapped_column(Integer)
    product: Mapped[int] = mapped_column(Integer)
    qty: Mapped[int] = mapped_column(Integer)
    via: Mapped[str] = mapped_column(String)


class Voucher(Base):
    __tablename__ = "vouchers"
    shop: Mapped[str] = mapped_column(String, primary_key=True)
    code: Mapped[str] = mapped_column(String, primary_key=True)
    limit: Mapped[int] = mapped_column(Integer)
    uses_left: Mapped[int] = mapped_column(Integer)


class Redemption(Base):
    __tablename__ = "redemptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop: Mapped[str] = mapped_column(String, index=True)
    code: Mapped[str] = mapped_column(String)
    user_id: Mapped[int] = mapped_column(Integer)


def make_engine():
    url = os.environ["DATABASE_URL"]
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    engine = create_engine(url, pool_size=80, max_overflow=20,
                           connect_args={"options": f"-csearch_path={SCHEMA}"})
    with engine.begin() as c:
        c.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    Base.metadata.create_all(engine)
    return engine


ENGINE = None
ROUTE = re.compile(r"^/s/([A-Za-z0-9_-]+)(/[^?]*)(?:\?(.*))?$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, doc=None, cookie=None):
        body = json.dumps(doc if doc is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw.strip() else {}

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route(self, method):
        m = ROUTE.match(self.path)
        if not m:
            return self.reply(404, {"error": "no such shop"})
        shop, path = m.group(1), m.group(2)
        try:
            body = self.body() if method == "POST" else {}
        except ValueError:
            return self.reply(400, {"error": "the body is not JSON"})
        # Query parameters fill in what the body leaves out (a reset URL).
        for k, v in urllib.parse.parse_qsl(m.group(3) or ""):
            body.setdefault(k, v)
        handler = ROUTES.get((method, path))
        if handler is None:
            return self.reply(404, {"error": f"no route {method} {path}"})
        with Session(ENGINE) as s:
            status, doc, cookie = handler(self, s, shop, body)
        self.reply(status, doc, cookie)

    def user(self, s, shop):
        """The logged-in user, by the shop's way of logging in."""
        cfg = s.get(Shop, shop)
        token = None
        if cfg.auth == "bearer":
            h = self.headers.get("Authorization") or ""
            if h.startswith("Bearer "):
                token = h[len("Bearer "):]
        else:
            for part in (self.headers.get("Cookie") or "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == "sid":
                    token = v
        if not token:
            return None, cfg
        login = s.get(Login, token)
        if login is None or login.shop != shop:
            return None, cfg
        return login.user_id, cfg


def think(cfg):
    if not cfg.safe and cfg.think_ms:
        time.sleep(cfg.think_ms / 1000)


def reset(h, s, shop, b):
    with s.begin():
        for model in (Login, CartItem, Order, Redemption, Voucher, Product, User, Shop):
            if model is Login:
                s.execute(delete(Login).where(Login.shop == shop))
            else:
                s.execute(delete(model).where(model.shop == shop if model is not Shop else Shop.name == shop))
        s.add(Shop(name=shop, safe=str(b.get("safe", "0")).lower() in ("1", "true"),
                   auth=b.get("auth", "bearer"),
                   think_ms=int(b.get("think_ms", 20))))
        for i in range(1, int(b.get("users", 60)) + 1):
            s.add(User(shop=shop, name=f"user{i}", password=f"pw-{shop}-{i}-s3cret"))
        s.add(Product(shop=shop, id=1, stock=int(b.get("stock", 10))))
        uses = int(b.get("voucher_uses", 1))
        s.add(Voucher(shop=shop, code="SAVE10", limit=uses, uses_left=uses))
    return 200, {"ok": True}, None


def login(h, s, shop, b):
    with s.begin():
        u = s.scalars(select(User).where(User.shop == shop, User.name == b.get("user"))).first()
        if u is None or u.password != b.get("password"):
            return 401, {"error": "wrong user or password"}, None
        token = secrets.token_urlsafe(24)
        s.add(Login(token=token, shop=shop, user_id=u.id))
    return 200, {"token": token, "user": {"id": u.id}}, f"sid={token}; Path=/s/{shop}; HttpOnly"


def add_to_cart(h, s, shop, b):
    with s.begin():
        uid, _ = h.user(s, shop)
        if uid is None:
            return 401, {"error": "log in first"}, None
        s.add(CartItem(shop=shop, user_id=uid, product=int(b.get("product", 1)), qty=int(b.get("qty", 1))))
    return 201, {"ok": True}, None


def sell(s, shop, uid, cfg, qty, via):
    """Take qty units of product 1 for uid: (status, doc)."""
    q = select(Product).where(Product.shop == shop, Product.id == 1)
    if cfg.safe:
        q = q.with_for_update()
    p = s.scalars(q).one()
    think(cfg)
    if p.stock < qty:
        return 409, {"error": "sold out"}
    # Unsafe: the ORM writes back the stock it read, minus qty.
    p.stock = p.stock - qty
    s.add(Order(shop=shop, user_id=uid, product=1, qty=qty, via=via))
    return 201, {"ok": True}


def checkout(h, s, shop, b):
    with s.begin():
        uid, cfg = h.user(s, shop)
        if uid is None:
            return 401, {"error": "log in first"}, None
        items = s.scalars(select(CartItem).where(CartItem.shop == shop, CartItem.user_id == uid)).all()
        qty = sum(i.qty for i in items)
        if qty == 0:
            return 400, {"error": "the cart is empty"}, None
        status, doc = sell(s, shop, uid, cfg, qty, "checkout")
        if status == 201:
            for i in items:
                s.delete(i)
    return status, doc, None


def buy_now(h, s, shop, b):
    with s.begin():
        uid, cfg = h.user(s, shop)
        if uid is None:
            return 401, {"error": "log in first"}, None
        status, doc = sell(s, shop, uid, cfg, int(b.get("qty", 1)), "buy-now")
    return status, doc, None


def apply_voucher(h, s, shop, b):
    with s.begin():
        uid, cfg = h.user(s, shop)
        if uid is None:
            return 401, {"error": "log in first"}, None
        q = select(Voucher).where(Voucher.shop == shop, Voucher.code == b.get("code"))
        if cfg.safe:
            q = q.with_for_update()
        v = s.scalars(q).first()
        if v is None:
            return 404, {"error": "no such voucher"}, None
        think(cfg)
        if v.uses_left <= 0:
            return 409, {"error": "the voucher is used up"}, None
        v.uses_left = v.uses_left - 1
        s.add(Redemption(shop=shop, code=v.code, user_id=uid))
    return 200, {"ok": True}, None


def stock(h, s, shop, b):
    p = s.get(Product, (shop, 1))
    sold = s.scalar(select(func.coalesce(func.sum(Order.qty), 0)).where(Order.shop == shop))
    orders = s.scalar(select(func.count()).select_from(Order).where(Order.shop == shop))
    by_via = dict(s.execute(select(Order.via, func.count()).where(Order.shop == shop).group_by(Order.via)).all())
    return 200, {"stock": p.stock, "sold": int(sold), "orders": int(orders), "by_via": by_via}, None


def voucher(h, s, shop, b):
    v = s.get(Voucher, (shop, "SAVE10"))
    n = s.scalar(select(func.count()).select_from(Redemption).where(Redemption.shop == shop))
    return 200, {"limit": v.limit, "uses_left": v.uses_left, "redemptions": int(n)}, None


ROUTES = {
    ("POST", "/reset"): reset,
    ("POST", "/login"): login,
    ("POST", "/cart/items"): add_to_cart,
    ("POST", "/checkout"): checkout,
    ("POST", "/buy-now"): buy_now,
    ("POST", "/voucher/apply"): apply_voucher,
    ("GET", "/stock"): stock,
    ("GET", "/voucher"): voucher,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def main():
    global ENGINE
    ENGINE = make_engine()
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    # Serve until whoever started us closes our standard input.
    sys.stdin.read()
    server.shutdown()
    with ENGINE.begin() as c:
        c.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
    ENGINE.dispose()


if __name__ == "__main__":
    main()
