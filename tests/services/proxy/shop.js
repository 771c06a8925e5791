// A shop on node-postgres (pg) and Node's own http server, for racing
// through racelab's wire proxy. DATABASE_URL is the database; PORT the
// port (0: any, printed as "listening on PORT").
//   GET / (ready), GET /stock, POST /reset,
//   POST /unsafe/buy (read, wait, write back read-1: a lost update),
//   POST /safe/buy (SELECT ... FOR UPDATE, then the write: safe).
// Queries go as named prepared statements (pg's `name`).
const http = require("http");
const { Pool } = require("pg");

const STOCK = Number(process.env.SHOP_STOCK || 3);
const THINK = Number(process.env.SHOP_THINK_MS || 20);
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function setup() {
  await pool.query("CREATE TABLE IF NOT EXISTS products (id int PRIMARY KEY, stock int NOT NULL)");
  await pool.query("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, product_id int NOT NULL)");
  await reset();
}

async function reset() {
  await pool.query({
    name: "reset",
    text: "INSERT INTO products VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET stock = $1",
    values: [STOCK],
  });
  await pool.query("DELETE FROM orders");
}

async function buy(locked) {
  const c = await pool.connect();
  try {
    await c.query("BEGIN");
    const r = await c.query({
      name: locked ? "read_locked" : "read",
      text: "SELECT stock FROM products WHERE id = $1" + (locked ? " FOR UPDATE" : ""),
      values: [1],
    });
    const stock = r.rows[0].stock;
    await sleep(THINK);
    if (stock < 1) {
      await c.query("ROLLBACK");
      return false;
    }
    await c.query({ name: "write", text: "UPDATE products SET stock = $1 WHERE id = $2", values: [stock - 1, 1] });
    await c.query({ name: "order", text: "INSERT INTO orders (product_id) VALUES ($1)", values: [1] });
    await c.query("COMMIT");
    return true;
  } catch (e) {
    await c.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

function answer(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  req.resume();
  req.on("end", async () => {
    try {
      if (req.url === "/") return answer(res, 200, { driver: "pg" });
      if (req.url === "/stock") {
        const r = await pool.query("SELECT stock FROM products WHERE id = 1");
        return answer(res, 200, { stock: r.rows[0].stock });
      }
      if (req.url === "/reset" && req.method === "POST") {
        await reset();
        return answer(res, 200, { stock: STOCK });
      }
      const locked = { "/unsafe/buy": false, "/safe/buy": true }[req.url];
      if (locked === undefined || req.method !== "POST") return answer(res, 404, { error: "not found" });
      const ok = await buy(locked);
      return answer(res, ok ? 201 : 409, { bought: ok });
    } catch (e) {
      return answer(res, 500, { error: String(e) });
    }
  });
});

setup().then(
  () =>
    server.listen(Number(process.env.PORT || 0), "127.0.0.1", () =>
      console.log(`listening on ${server.address().port}`)
    ),
  (e) => {
    console.error("setup failed:", e);
    process.exit(1);
  }
);
