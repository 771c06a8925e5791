//! Command-line argument types of `racelab http` and `racelab serve` (clap
//! derive, no logic): `crate::http::plan` validates them.

use clap::Args;

use crate::cli::{DbArgs, Expect, OutputArgs};

/// `racelab http URL`: race concurrent purchase requests against a service.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The purchase endpoint, e.g. http://127.0.0.1:8080/purchase.
    pub url: String,

    /// HTTP method of the purchase request.
    #[arg(long, default_value = "POST")]
    pub method: String,

    /// A request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K:V")]
    pub headers: Vec<String>,

    /// Request body; {{buyer}}, {{attempt}}, {{qty}} and {{product}} are
    /// replaced (JSON-escaped) for each request.
    #[arg(long, value_name = "TEMPLATE")]
    pub body: Option<String>,

    /// What {{buyer}} becomes: `{n}` is the buyer's number (default: the number alone).
    #[arg(long, value_name = "PATTERN")]
    pub buyer_name: Option<String>,

    /// Per-request time limit in milliseconds (0 = none). A request that
    /// times out after it was sent is `unknown`: it may have bought.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout: u64,

    /// Status codes that mean "bought" (default: any 2xx).
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub success: Vec<u16>,

    /// Status codes that mean "sold out".
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "CODES",
        default_value = "409,410,422"
    )]
    pub sold_out: Vec<u16>,

    /// Status codes that mean a safe refusal ("rejected").
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "CODES",
        default_value = "429"
    )]
    pub rejected: Vec<u16>,

    /// Number of concurrent buyers.
    #[arg(short, long)]
    pub buyers: Option<u32>,

    /// Requests each buyer makes (not with --duration).
    #[arg(short, long)]
    pub attempts: Option<u32>,

    /// Units each request buys (the {{qty}} placeholder).
    #[arg(short, long)]
    pub quantity: Option<i64>,

    /// Products buyers choose from (the {{product}} placeholder).
    #[arg(long)]
    pub products: Option<u32>,

    /// Zipf skew of product choice (0 = uniform).
    #[arg(long)]
    pub skew: Option<f64>,

    /// Loop buyers for this many seconds instead of a fixed number of requests.
    #[arg(short, long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Seed for random choices (default: random, recorded in the result).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Truth, most trusted: a read-only query on the service's database
    /// returning one row with a `stock` column (and optionally `units_sold`),
    /// run before and after each race.
    #[arg(long, value_name = "SQL", requires = "database_url")]
    pub verify_sql: Option<String>,

    /// The service's database, for --verify-sql and --reset-sql.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Truth: a stock endpoint read (GET) before and after each race.
    #[arg(long, value_name = "URL")]
    pub stock_url: Option<String>,

    /// Where the number is in the stock endpoint's JSON, e.g. `.stock` or `.data.items[0].stock`.
    #[arg(long, default_value = ".stock", value_name = "PATH")]
    pub stock_json_path: String,

    /// The initial stock. Alone, the audit is racelab's own count of
    /// successes against it: a client-side belief, labelled as such.
    #[arg(long, value_name = "N")]
    pub stock: Option<i64>,

    /// POST to this URL before each repetition (restore the stock).
    #[arg(long, value_name = "URL")]
    pub reset_url: Option<String>,

    /// Run this SQL on --database-url before each repetition (restore the stock).
    #[arg(long, value_name = "SQL", requires = "database_url")]
    pub reset_sql: Option<String>,

    /// Seconds to wait for a connection to the database.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub connect_timeout: f64,

    #[command(flatten)]
    pub output: OutputArgs,

    /// Race this many times (races are probabilistic); reset with --reset-url or --reset-sql.
    #[arg(long, default_value_t = 1, value_name = "R")]
    pub repeat: u32,

    /// Fail (exit 1) unless every run has this verdict.
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,
}

/// `racelab serve`: a small shop over racelab's database layer.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Strategy each purchase runs: a built-in name or a path to a .sql file.
    #[arg(short, long, default_value = "naive")]
    pub strategy: String,

    /// TCP port to listen on (0: any free port, printed at start).
    #[arg(short, long, default_value_t = 8080)]
    pub port: u16,

    /// Address to bind. Not loopback means anyone who can reach it can buy.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: String,

    /// Scenario the stock, products and think time come from.
    #[arg(long, default_value = "default")]
    pub scenario: String,

    /// Initial stock of each product (restored by POST /reset).
    #[arg(long)]
    pub stock: Option<i64>,

    /// Number of products.
    #[arg(long)]
    pub products: Option<u32>,

    /// Think time in milliseconds (the script's :think).
    #[arg(long, value_name = "MS")]
    pub think_ms: Option<u64>,

    /// Database connections serving purchases at once.
    #[arg(short, long, default_value_t = 32, value_name = "N")]
    pub connections: u32,

    /// Tries per purchase for serialization failures, deadlocks and \retry (0: unlimited).
    #[arg(long, value_name = "N")]
    pub max_tries: Option<u32>,

    #[command(flatten)]
    pub db: DbArgs,

    /// Print nothing but the address and the database URL.
    #[arg(long)]
    pub quiet: bool,
}
