"""A shop whose SQL is its drivers', for racing through racelab's wire proxy.

    DRIVER=asyncpg|psycopg|sqlalchemy hypercorn --bind 127.0.0.1:PORT shop:app

DATABASE_URL is the database (racelab's proxy). At start-up it creates
`products(id, stock)` with one product of SHOP_STOCK (default 3).

  GET  /               200 (ready)
  GET  /stock          {"stock": S}
  POST /reset          stock back to SHOP_STOCK
  POST /unsafe/buy     read the stock, wait, write back what was read minus
                       one, in one transaction (READ COMMITTED): a lost update
  POST /split/buy      check the stock in one transaction, then decrement it
                       in another: the check is stale by then (scope-based)
  POST /safe/buy       one guarded decrement: safe
Each buy answers 201 (bought) or 409 (sold out).
"""

import asyncio
import json
import os

DRIVER = os.environ.get("DRIVER", "asyncpg")
URL = os.environ["DATABASE_URL"]
STOCK = int(os.environ.get("SHOP_STOCK", "3"))
THINK = float(os.environ.get("SHOP_THINK_S", "0.02"))
POOL = int(os.environ.get("SHOP_POOL", "20"))

SETUP = [
    "CREATE TABLE IF NOT EXISTS products (id int PRIMARY KEY, stock int NOT NULL)",
    "CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, product_id int NOT NULL)",
]


class Asyncpg:
    async def start(self):
        import asyncpg

        self.pool = await asyncpg.create_pool(URL, min_size=2, max_size=POOL)
        async with self.pool.acquire() as c:
            for s in SETUP:
                await c.execute(s)
            await self.reset()

    async def reset(self):
        async with self.pool.acquire() as c:
            await c.execute(
                "INSERT INTO products VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET stock = $1", STOCK
            )
            await c.execute("DELETE FROM orders")

    async def stock(self):
        async with self.pool.acquire() as c:
            return await c.fetchval("SELECT stock FROM products WHERE id = $1", 1)

    async def unsafe(self):
        async with self.pool.acquire() as c:
            async with c.transaction():
                stock = await c.fetchval("SELECT stock FROM products WHERE id = $1", 1)
                await asyncio.sleep(THINK)
                if stock < 1:
                    return False
                await c.execute("UPDATE products SET stock = $1 WHERE id = $2", stock - 1, 1)
                await c.execute("INSERT INTO orders (product_id) VALUES ($1)", 1)
                return True

    async def split(self):
        async with self.pool.acquire() as c:
            async with c.transaction():
                stock = await c.fetchval("SELECT stock FROM products WHERE id = $1", 1)
            await asyncio.sleep(THINK)
            if stock < 1:
                return False
            async with c.transaction():
                await c.execute("UPDATE products SET stock = stock - 1 WHERE id = $1", 1)
                await c.execute("INSERT INTO orders (product_id) VALUES ($1)", 1)
            return True

    async def safe(self):
        async with self.pool.acquire() as c:
            async with c.transaction():
                left = await c.fetchval(
                    "UPDATE products SET stock = stock - 1 WHERE id = $1 AND stock >= 1 RETURNING stock", 1
                )
                if left is None:
                    return False
                await c.execute("INSERT INTO orders (product_id) VALUES ($1)", 1)
                return True


class Psycopg:
    """psycopg 3, async, a connection per request (server-side binding)."""

    async def connect(self):
        import psycopg

        return await psycopg.AsyncConnection.connect(URL)

    async def start(self):
        async with await self.connect() as c:
            for s in SETUP:
                await c.execute(s)
            await c.commit()
        await self.reset()

    async def reset(self):
        async with await self.connect() as c:
            await c.execute(
                "INSERT INTO products VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET stock = %s", (STOCK, STOCK)
            )
            await c.execute("DELETE FROM orders")
            await c.commit()

    async def stock(self):
        async with await self.connect() as c:
            cur = await c.execute("SELECT stock FROM products WHERE id = %s", (1,))
            return (await cur.fetchone())[0]

    async def unsafe(self):
        async with await self.connect() as c:
            async with c.transaction():
                cur = await c.execute("SELECT stock FROM products WHERE id = %s", (1,))
                stock = (await cur.fetchone())[0]
                await asyncio.sleep(THINK)
                if stock < 1:
                    return False
                await c.execute("UPDATE products SET stock = %s WHERE id = %s", (stock - 1, 1))
                await c.execute("INSERT INTO orders (product_id) VALUES (%s)", (1,))
                return True

    async def split(self):
        async with await self.connect() as c:
            # autocommit: the check is a transaction of its own
            await c.set_autocommit(True)
            cur = await c.execute("SELECT stock FROM products WHERE id = %s", (1,))
            stock = (await cur.fetchone())[0]
            await asyncio.sleep(THINK)
            if stock < 1:
                return False
            async with c.transaction():
                await c.execute("UPDATE products SET stock = stock - 1 WHERE id = %s", (1,))
                await c.execute("INSERT INTO orders (product_id) VALUES (%s)", (1,))
            return True

    async def safe(self):
        async with await self.connect() as c:
            async with c.transaction():
                cur = await c.execute(
                    "UPDATE products SET stock = stock - 1 WHERE id = %s AND stock >= 1 RETURNING stock", (1,)
                )
                if await cur.fetchone() is None:
                    return False
                await c.execute("INSERT INTO orders (product_id) VALUES (%s)", (1,))
                return True


class Orm:
    """SQLAlchemy 2 ORM over psycopg 3 (async)."""

    async def start(self):
        from sqlalchemy import Integer, text
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        class Base(DeclarativeBase):
            pass

        class Product(Base):
            __tablename__ = "products"
            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            stock: Mapped[int] = mapped_column(Integer)

        class Order(Base):
            __tablename__ = "orders"
            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            product_id: Mapped[int] = mapped_column(Integer)

        self.Product, self.Order, self.text = Product, Order, text
        url = URL.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "postgres://", "postgresql+psycopg://", 1
        )
        self.engine = create_async_engine(url, pool_size=POOL, max_overflow=0)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)
        async with self.engine.begin() as c:
            for s in SETUP:
                await c.execute(text(s))
        await self.reset()

    async def reset(self):
        async with self.session() as s:
            p = await s.get(self.Product, 1)
            if p is None:
                s.add(self.Product(id=1, stock=STOCK))
            else:
                p.stock = STOCK
            await s.execute(self.text("DELETE FROM orders"))
            await s.commit()

    async def stock(self):
        async with self.session() as s:
            return (await s.get(self.Product, 1)).stock

    async def unsafe(self):
        async with self.session() as s:
            p = await s.get(self.Product, 1)
            await asyncio.sleep(THINK)
            if p.stock < 1:
                return False
            p.stock = p.stock - 1
            s.add(self.Order(product_id=1))
            await s.commit()
            return True

    async def split(self):
        async with self.session() as s:
            p = await s.get(self.Product, 1)
            await s.commit()
            await asyncio.sleep(THINK)
            if p.stock < 1:
                return False
            from sqlalchemy import update

            await s.execute(update(self.Product).where(self.Product.id == 1).values(stock=self.Product.stock - 1))
            s.add(self.Order(product_id=1))
            await s.commit()
            return True

    async def safe(self):
        from sqlalchemy import update

        async with self.session() as s:
            r = await s.execute(
                update(self.Product)
                .where(self.Product.id == 1, self.Product.stock >= 1)
                .values(stock=self.Product.stock - 1)
                .returning(self.Product.stock)
            )
            if r.first() is None:
                return False
            s.add(self.Order(product_id=1))
            await s.commit()
            return True


SHOP = {"asyncpg": Asyncpg, "psycopg": Psycopg, "sqlalchemy": Orm}[DRIVER]()


async def send(send_, status, body):
    data = json.dumps(body).encode()
    await send_(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send_({"type": "http.response.body", "body": data})


async def app(scope, receive, send_):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await SHOP.start()
                await send_({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send_({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    method, path = scope["method"], scope["path"]
    if path == "/":
        return await send(send_, 200, {"driver": DRIVER})
    if path == "/stock":
        return await send(send_, 200, {"stock": await SHOP.stock()})
    if path == "/reset" and method == "POST":
        await SHOP.reset()
        return await send(send_, 200, {"stock": STOCK})
    buy = {"/unsafe/buy": SHOP.unsafe, "/split/buy": SHOP.split, "/safe/buy": SHOP.safe}.get(path)
    if buy is None or method != "POST":
        return await send(send_, 404, {"error": "not found"})
    ok = await buy()
    return await send(send_, 201 if ok else 409, {"bought": ok})
