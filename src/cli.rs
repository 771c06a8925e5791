//! Command-line argument types (clap derive), in one tree. No logic lives
//! here: `plan` turns these into a validated plan, and nothing below the
//! command layer sees them. Flag groups shared by several commands are
//! declared once and flattened: `ScenarioArgs` (the workload: `run`,
//! `compare`, `http`), `GateArgs` (repetitions and what must hold),
//! `OutputArgs`; `SqlArgs`, `DbArgs` and `ViaArgs` belong to the SQL lab
//! (`run`, `compare`; `DbArgs` also to `serve` and `explore`), `RequestArgs` and `TruthArgs` to `http`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A race-condition lab and benchmark harness for PostgreSQL.
///
/// racelab seeds stock, releases concurrent buyers at the same instant
/// against a purchase strategy, then audits the database: how many units were
/// oversold, how much stock drifted, and how long purchases took.
#[derive(Debug, Parser)]
#[command(name = "racelab", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Race one strategy and audit the result.
    Run(RunArgs),
    /// Race several strategies on the same scenario, side by side.
    Compare(CompareArgs),
    /// List the built-in (and local) strategies and scenarios.
    List {
        /// Print the catalog as JSON (docs/cli.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Print a strategy script (a built-in name or a path).
    Show {
        /// Strategy name or path to a .sql file.
        strategy: String,
    },
    /// Explain a strategy: its script annotated with locks, waits and
    /// isolation, and a verdict (exit 0 SAFE, 1 UNSAFE, 4 UNSURE);
    /// `--check` holds the verdict against every schedule `explore` runs.
    Explain(Box<ExplainArgs>),
    /// Turn saved result files into one self-contained HTML report with charts.
    Report(ReportArgs),
    /// Race concurrent purchase requests against an HTTP service and audit it.
    Http(Box<HttpArgs>),
    /// Serve a small shop over HTTP that runs a strategy per purchase.
    Serve(ServeArgs),
    /// A live classroom: students buy the last item from their phones, the
    /// projector shows the race, its verdict and the lost update.
    Classroom(ClassroomArgs),
    /// Run every interleaving of a few buyers, one SQL statement at a time,
    /// each from a fresh lab, audited: a proof for k buyers, not a sample.
    Explore(ExploreArgs),
    /// Relay a service's PostgreSQL connections to a server, recording what
    /// each one did (statements, bound values, results, transactions).
    Proxy(ProxyArgs),
    /// Manage a kept PostgreSQL cluster that later runs reuse.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Print the manual page (roff): `racelab man | man -l -`.
    Man {
        /// A subcommand's page instead of racelab's (e.g. `run`).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// Print a shell's completion script, e.g. `racelab completions bash >
    /// ~/.local/share/bash-completion/completions/racelab`.
    Completions {
        /// The shell to complete racelab's subcommands and flags in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the JSON schema of racelab's results, generated from the
    /// result types: `racelab schema > docs/result.schema.json`.
    #[command(hide = true)]
    Schema,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Strategy: a built-in name (see `racelab list`) or a path to a .sql file.
    #[arg(short, long, default_value = "naive")]
    pub strategy: String,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Comma-separated strategies (names or paths); default: every built-in.
    #[arg(long, value_delimiter = ',')]
    pub strategies: Vec<String>,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Everything `run` and `compare` share: the SQL lab's flags.
#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,

    #[command(flatten)]
    pub sql: SqlArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub via: ViaArgs,

    #[command(flatten)]
    pub gate: GateArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub tables: TableArgs,

    /// Sample stock and units sold every MS milliseconds on a separate connection during the race.
    #[arg(long, value_name = "MS")]
    pub watch: Option<u64>,
}

/// How many times to race, and what must hold (the CI gate).
#[derive(Debug, Args)]
pub struct GateArgs {
    /// Race each strategy (or the target) this many times (races are probabilistic).
    #[arg(long, default_value_t = 1, value_name = "R")]
    pub repeat: u32,

    /// Fail (exit 1) unless every run has this verdict. `safe` also asks
    /// for a race that happened (not `inconclusive`) and a clean run: no
    /// attempt ended in `error` or `unknown` (see --max-errors).
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,

    /// With --expect safe: attempts per run that may end in `error` or
    /// `unknown` and still pass (default 0: a clean run).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_errors: u64,

    /// Compare latency and throughput with saved results (files from results/
    /// or `--json` output); repeat the flag for several files.
    #[arg(long, value_name = "FILE")]
    pub baseline: Vec<PathBuf>,

    /// With --baseline: fail (exit 1) when p50 or p99 grows by more than this
    /// percentage, or the baseline's attempts/s beat the current by more.
    #[arg(long, default_value_t = 25.0, value_name = "PCT")]
    pub max_regression: f64,

    /// With --baseline: accept strategies the baseline has no run of
    /// (without it, such a strategy fails the gate: a misspelt name must
    /// not pass).
    #[arg(long, requires = "baseline")]
    pub allow_missing: bool,
    /// End a race in which no attempt finishes for SECONDS (a livelock, a
    /// lock held outside the race, retries without end): it is aborted, its
    /// partial result kept, never SAFE, with what the buyers wait on.
    /// Default 10, longer with long think times, a slow --rate or a long
    /// --timeout.
    #[arg(long, value_name = "SECONDS")]
    pub no_progress: Option<f64>,
}

/// `racelab report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result files written by `run` or `compare` (e.g. results/*.json).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,

    /// The HTML file to write.
    #[arg(short, long, default_value = "report.html", value_name = "FILE")]
    pub output: PathBuf,
}

/// The workload: a scenario and per-field overrides (every target kind).
#[derive(Debug, Args, Default)]
pub struct ScenarioArgs {
    /// Scenario: a built-in name (see `racelab list`) or a path to a .toml file.
    #[arg(long, default_value = "default")]
    pub scenario: String,

    /// Number of concurrent buyers.
    #[arg(short, long)]
    pub buyers: Option<u32>,

    /// Initial stock of each product. For `racelab http`, the stock the
    /// service starts with, as you declare it: alone, the audit is racelab's
    /// own count of successes against it (a client-side belief, labelled as
    /// such).
    // Negative numbers reach the validator, which says what is allowed.
    #[arg(long, allow_negative_numbers = true)]
    pub stock: Option<i64>,

    /// Attempts each buyer makes (not with --duration).
    #[arg(short, long)]
    pub attempts: Option<u32>,

    /// Units each attempt tries to buy (the script's :qty, the request's {{qty}}).
    #[arg(long, allow_negative_numbers = true)]
    pub quantity: Option<i64>,

    /// Number of products buyers choose from.
    #[arg(long)]
    pub products: Option<u32>,

    /// Zipf skew of product choice (0 = uniform).
    #[arg(long)]
    pub skew: Option<f64>,

    /// Loop buyers for this many seconds instead of a fixed number of attempts.
    #[arg(short, long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Open loop: start attempts at this rate per second across all buyers
    /// (exponential inter-arrival times, from --seed), each timed from its
    /// scheduled start; the buyers cap how many run at once.
    #[arg(long, value_name = "PER_SECOND", allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Seed for think-time jitter and random choices (default: random, recorded in the result).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// How buyers run a strategy on the SQL lab (`run`, `compare`).
#[derive(Debug, Args, Default)]
pub struct SqlArgs {
    /// Think time in milliseconds (the script's :think).
    #[arg(long, value_name = "MS")]
    pub think_ms: Option<u64>,

    /// Share a pool of N connections between buyers (0: one per buyer).
    #[arg(short, long, value_name = "N")]
    pub connections: Option<u32>,

    /// Tries per attempt for serialization failures, deadlocks and \retry (0: unlimited).
    #[arg(long, value_name = "N")]
    pub max_tries: Option<u32>,

    /// Per-statement time limit in milliseconds: the server's statement_timeout and
    /// lock_timeout, and racelab's own deadline on every reply (MS plus a grace), so a
    /// server that stops answering ends the run (aborted) instead of hanging it; 0 = none.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,

    /// Inject a fault during the race (repeatable): `terminate:RATE` terminates random
    /// buyer backends RATE times a second (buyers reconnect and go on); `drop-reply:P`
    /// drops a buyer's connection right after it sends its COMMIT, with probability P,
    /// so the outcome is unknown although the server may have committed.
    #[arg(long, value_name = "KIND:RATE")]
    pub nemesis: Vec<String>,

    /// Resubmit an attempt of unknown outcome under the same attempt id, as a client
    /// that times out and retries would, up to N times (default 3).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "3")]
    pub retry_unknown: Option<u32>,
}

/// Where the server comes from.
#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Use this PostgreSQL server instead of an embedded throwaway cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory holding the PostgreSQL server binaries (initdb, postgres).
    #[arg(long, env = "RACELAB_PG_BIN", value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,

    /// The schema racelab owns and works in.
    #[arg(long, default_value = "racelab")]
    pub schema: String,

    /// Keep durability on in the embedded cluster (fsync, synchronous_commit).
    #[arg(long)]
    pub durable: bool,

    /// Seconds to wait for a connection to the server.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub connect_timeout: f64,

    /// Set after parsing: `database_url` came from the environment
    /// (`DATABASE_URL`), not from the flag.
    #[arg(skip)]
    pub url_from_env: bool,
}

/// Redis, for strategies with `\redis` commands (`run`, `compare`).
#[derive(Debug, Args, Clone)]
pub struct RedisArgs {
    /// Use this Redis server (redis://, rediss://, redis+unix://) for strategies with
    /// `\redis` commands instead of an embedded one; only keys under `<schema>:` are touched.
    #[arg(
        long,
        env = "RACELAB_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,

    /// Directory holding redis-server, for the embedded Redis.
    #[arg(long, env = "RACELAB_REDIS_BIN", value_name = "DIR")]
    pub redis_bin: Option<PathBuf>,
}

/// What stands between the buyers and the server (`run`, `compare`).
#[derive(Debug, Args, Clone, Default)]
pub struct ViaArgs {
    /// Send the buyers' connections through a pooler that racelab starts
    /// (setup, reset and the audit still go to the server directly).
    #[arg(long, value_enum, value_name = "POOLER")]
    pub via: Option<Via>,

    /// With --via pgbouncer: when a server connection goes back to the pool
    /// (after each transaction by default).
    #[arg(long, value_enum, value_name = "MODE")]
    pub pool_mode: Option<PoolMode>,

    /// With --via pgbouncer: server connections in the pool (default 20,
    /// PgBouncer's default_pool_size).
    #[arg(long, value_name = "N")]
    pub pool_size: Option<u32>,

    /// Directory holding pgbouncer, for --via pgbouncer.
    #[arg(long, env = "RACELAB_PGBOUNCER_BIN", value_name = "DIR")]
    pub pgbouncer_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// An embedded PgBouncer.
    Pgbouncer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolMode {
    /// A client keeps its server connection until it disconnects.
    Session,
    /// The server connection goes back after each transaction.
    Transaction,
    /// The server connection goes back after each statement; multi-statement
    /// transactions are refused.
    Statement,
}

#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Print the result as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Directory the result files are written to.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,

    /// Do not write result files.
    #[arg(long)]
    pub no_save: bool,

    /// Print nothing but the result: no progress, no notes.
    #[arg(short, long)]
    pub quiet: bool,

    /// Write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Record what every buyer does (each statement; each request for `http`), at most 50 buyers, and print the interleaving and its anomalies; with FILE also write the events as JSON lines.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub trace: Option<Option<PathBuf>>,
}

/// How the tables of a race are drawn (`run`, `compare`, `http`).
#[derive(Debug, Args, Clone, Default)]
pub struct TableArgs {
    /// Draw the latency distribution per outcome as a terminal bar chart.
    #[arg(long)]
    pub histogram: bool,

    /// Show every column of the tables, however wide (by default they fit
    /// the terminal, or 100 columns without one: COLUMNS overrides).
    #[arg(long)]
    pub wide: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Expect {
    /// Every run is safe: raced, clean, no oversell, no drift.
    Safe,
    /// Every run oversold (proves the harness catches a broken strategy).
    Oversold,
}

/// `racelab http URL`: race concurrent purchase requests against a service.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The purchase endpoint, e.g. http://127.0.0.1:8080/purchase; with
    /// --flow, the base URL the steps' paths are joined to.
    pub url: String,

    #[command(flatten)]
    pub request: RequestArgs,

    #[command(flatten)]
    pub flow: FlowArgs,

    #[command(flatten)]
    pub truth: TruthArgs,

    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub explore: HttpExploreArgs,

    #[command(flatten)]
    pub scenario: ScenarioArgs,

    #[command(flatten)]
    pub gate: GateArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub tables: TableArgs,

    /// Not a flag of `http`: the per-request limit is --request-timeout
    /// (`--timeout` is the per-statement limit of `run`). Accepted here only
    /// to say so.
    #[arg(long, hide = true, value_name = "MS")]
    pub timeout: Option<String>,
}

/// `racelab http --explore`: every interleaving of the buyers' requests,
/// scheduled statement by statement through the wire proxy.
#[derive(Debug, Args, Default)]
pub struct HttpExploreArgs {
    /// Explore instead of race: one request per buyer (--buyers, at most 4),
    /// their SQL let through the proxy one batch at a time, every schedule
    /// (within --preemptions) run from a reset service (--reset-url or
    /// --reset-sql) and audited. Needs --service or --db-proxy.
    #[arg(long)]
    pub explore: bool,

    /// With --explore: the schedules with at most P preemptions, or `all`.
    #[arg(long, value_name = "P|all", requires = "explore")]
    pub preemptions: Option<String>,

    /// With --explore: replay one schedule (which request takes each step,
    /// e.g. "1 1 2 2 1").
    #[arg(long, value_name = "BUYERS", requires = "explore")]
    pub schedule: Option<String>,

    /// With --explore: stop after this many schedules (then not complete).
    #[arg(long, value_name = "N", requires = "explore")]
    pub max_schedules: Option<u64>,

    /// With --explore: how long the service may work between statements
    /// (neither sending its next one nor answering) before the schedule is
    /// stuck [default: 500].
    #[arg(long, value_name = "MS", requires = "explore")]
    pub settle_ms: Option<u64>,

    /// With --explore: write the counterexample as a PostgreSQL
    /// isolation-tester spec to FILE (its setup recreates the tables the
    /// statements touch, with the rows they read).
    #[arg(long, value_name = "FILE", requires = "explore")]
    pub spec: Option<PathBuf>,
}

/// Who the buyers are and what each does (`racelab http`).
#[derive(Debug, Args)]
pub struct FlowArgs {
    /// What each buyer does, as a flow of steps (TOML): steps before the
    /// race (log in, fill a cart) run per buyer before the barrier, the
    /// `race = true` step(s) are released together and audited, the steps
    /// after run after. Paths join the positional URL.
    #[arg(long, value_name = "FILE.toml")]
    pub flow: Option<PathBuf>,

    /// One row per buyer (buyer n takes row n): CSV with a header row, or
    /// JSON Lines. Every column is a variable ({{user}}, {{password}}...);
    /// the values are secrets, never written anywhere.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// With fewer users than buyers, start again at the first row.
    #[arg(long, requires = "users")]
    pub users_cycle: bool,

    /// No cookie jar: Set-Cookie is not stored, no Cookie is sent.
    #[arg(long)]
    pub no_cookies: bool,

    /// Buyers a step before the race may fail for (they are out of the
    /// race, counted) before the run is inconclusive.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_setup_failures: u64,

    /// With --trace, also record request and response bodies (secrets from
    /// --users and extracted values still replaced by ***).
    #[arg(long, requires = "trace")]
    pub trace_bodies: bool,
}

/// What `racelab http` sends, and what the answers mean.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// HTTP method of the purchase request [default: POST].
    #[arg(long)]
    pub method: Option<String>,

    /// A request header `Name: value` (repeatable; with --flow, sent with
    /// every step). Values may hold {{variables}}.
    #[arg(short = 'H', long = "header", value_name = "K:V")]
    pub headers: Vec<String>,

    /// Request body; {{buyer}}, {{attempt}}, {{qty}}, {{product}} and the
    /// --users columns are replaced for each request (JSON-escaped inside
    /// JSON strings). The URL and -H values take them too.
    #[arg(long, value_name = "TEMPLATE")]
    pub body: Option<String>,

    // Help from `buyer_name_help`: clap turns `{n}` in help text into a
    // line break, and `{n}` is the placeholder this flag takes.
    #[arg(long, value_name = "PATTERN", help = buyer_name_help())]
    pub buyer_name: Option<String>,

    /// Per-request time limit in milliseconds (0 = none). A request that
    /// times out after it was sent is `unknown`: it may have bought.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub request_timeout: u64,

    /// Speak HTTP/2: h2c with prior knowledge for http://, ALPN h2 for
    /// https://. Buyers' requests are streams over as few connections as
    /// the server's concurrent-stream limit allows.
    #[arg(long)]
    pub http2: bool,

    /// Also trust the CA certificates in FILE (PEM) for https:// targets
    /// and endpoints, besides the public roots (a staging CA, a test
    /// certificate).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// How buyers' first requests are released. `last-byte`: each is sent
    /// before the barrier but for its final byte (HTTP/1.1) or final frame
    /// (HTTP/2), and those are all written at the release; `none`: each is
    /// sent whole after the barrier. Later requests always go whole.
    #[arg(long, value_enum, default_value_t = SyncMode::LastByte)]
    pub sync: SyncMode,

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
}

/// The help of `--buyer-name`, whose placeholder `{n}` clap would read as
/// a line break in plain help text: the `n` is styled, so that the text
/// never holds the three characters `{n}` in a row; a terminal shows the
/// `n` bold, anything else shows `{n}`.
fn buyer_name_help() -> clap::builder::StyledStr {
    use std::fmt::Write;
    let bold = clap::builder::styling::Style::new().bold();
    let mut s = clap::builder::StyledStr::new();
    let _ = write!(
        s,
        "What {{{{buyer}}}} becomes: {{{bold}n{bold:#}}} is the buyer's number, e.g. \
         'user-{{{bold}n{bold:#}}}' (default: the number alone)"
    );
    s
}

/// How `racelab http` releases buyers' first requests (`--sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncMode {
    /// Everything but the final byte (or HTTP/2 frame) before the barrier.
    LastByte,
    /// The whole request after the barrier.
    None,
}

/// Where `racelab http` reads the truth, and how it resets the service.
#[derive(Debug, Args)]
pub struct TruthArgs {
    /// Truth, most trusted: a read-only query on the service's database
    /// returning one row with a `stock` column (and optionally `units_sold`),
    /// run before and after each race.
    #[arg(long, value_name = "SQL")]
    pub verify_sql: Option<String>,

    /// The service's database, for --verify-sql and --reset-sql.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Truth: a stock endpoint read (GET) before and after each race.
    #[arg(long, value_name = "URL")]
    pub stock_url: Option<String>,

    /// The stock in the stock endpoint's JSON: a path such as `.stock` or
    /// `.data.items[0].stock`, or an expression over paths and integers
    /// with + - * and parentheses, e.g. `.quantity - .reservedQuantity`.
    #[arg(long, default_value = ".stock", value_name = "EXPR")]
    pub stock_json_path: String,

    /// Units sold, read from the same stock endpoint (a path or an
    /// expression, as --stock-json-path), when the service keeps that
    /// count: the audit then uses the service's records.
    #[arg(long, value_name = "EXPR", requires = "stock_url")]
    pub sold_json_path: Option<String>,

    /// POST to this URL before each repetition (restore the stock).
    #[arg(long, value_name = "URL")]
    pub reset_url: Option<String>,

    /// Run this SQL on --database-url before each repetition (restore the stock).
    #[arg(long, value_name = "SQL")]
    pub reset_sql: Option<String>,

    /// Seconds to wait for a connection to the database.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub connect_timeout: f64,
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
    #[arg(short, long)]
    pub quiet: bool,
}

/// `racelab classroom`: the whole room races for the last item.
#[derive(Debug, Args)]
pub struct ClassroomArgs {
    /// Address to bind. Loopback by default: only this machine can join;
    /// 0.0.0.0 lets anyone on the network join (students' phones).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: String,

    /// TCP port to listen on (0: any free port; the printed URLs say which).
    #[arg(short, long, default_value_t = 8080)]
    pub port: u16,

    /// Host name or address the printed URLs and the QR code use (default:
    /// the bound address; with 0.0.0.0, this machine's first non-loopback
    /// IPv4 address).
    #[arg(long, value_name = "HOST")]
    pub url_host: Option<String>,

    /// A strategy file (.sql) to offer beside the built-ins; repeat for more.
    #[arg(long = "strategy", value_name = "FILE")]
    pub strategies: Vec<PathBuf>,

    /// Most purchases in flight at once, students and bots together (each
    /// has its own connection; the embedded server is sized for them).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub max_buyers: u32,

    /// Seconds a round stays open after its countdown, unless the teacher
    /// closes it sooner.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub open_seconds: u64,

    /// Tries per purchase for serialization failures, deadlocks and \retry (0: unlimited).
    #[arg(long, value_name = "N")]
    pub max_tries: Option<u32>,

    /// Directory each round's result JSON is written to.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,

    /// Do not write result files.
    #[arg(long)]
    pub no_save: bool,

    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Start a kept cluster and print its URL; later runs use it.
    Start {
        /// Directory holding the PostgreSQL server binaries.
        #[arg(long, env = "RACELAB_PG_BIN", value_name = "DIR")]
        pg_bin: Option<PathBuf>,
        /// Keep durability on.
        #[arg(long)]
        durable: bool,
        /// The server's max_connections.
        #[arg(long, default_value_t = 1000)]
        max_connections: u32,
    },
    /// Say whether a kept cluster is running (exit 1 when none is).
    Status {
        /// Print the status as JSON (docs/cli.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Print the kept cluster's URL.
    Url,
    /// Stop the kept cluster and delete its data.
    Stop {
        /// Stop it even while racelab runs use it (they fail).
        #[arg(long)]
        force: bool,
    },
    /// Remove racelab's schema (and its Redis keys) from a server racelab
    /// did not start, listing what it removes; nothing else is touched.
    Clean {
        /// The server to clean (the embedded and kept clusters are racelab's
        /// own: `racelab db stop` deletes the kept one).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
        database_url: Option<String>,

        /// The schema racelab owns there.
        #[arg(long, default_value = "racelab")]
        schema: String,

        /// Also delete racelab's keys (under `<schema>:`) from this Redis.
        #[arg(
            long,
            env = "RACELAB_REDIS_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        redis_url: Option<String>,

        /// Seconds to wait for a connection to the server.
        #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
        connect_timeout: f64,
    },
}

/// `racelab explain`: a strategy annotated with what PostgreSQL does, a
/// verdict, and with `--check` the verdict held against `explore`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Strategy name or path to a .sql file.
    pub strategy: String,

    /// Print the verdict and its findings as JSON (with --check, what
    /// exploring found too) instead of the annotated script.
    #[arg(long)]
    pub json: bool,

    /// Also explore the script on an embedded cluster (2 buyers, every
    /// schedule) and print both verdicts; where they disagree, the
    /// counterexample or the count of safe schedules. The exit code is then
    /// the explored verdict where exploring decided.
    #[arg(long)]
    pub check: bool,

    /// With --check: buyers to explore (2 runs every schedule; 3 or more
    /// up to --preemptions, 2 by default).
    #[arg(short, long)]
    pub buyers: Option<u32>,

    /// With --check: at most P preemptions, or `all` (the default for 2
    /// buyers).
    #[arg(short, long, value_name = "P|all")]
    pub preemptions: Option<String>,

    /// With --check: the one product's initial stock.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub stock: i64,

    /// With --check: units each attempt tries to buy.
    #[arg(short, long, default_value_t = 1, allow_negative_numbers = true)]
    pub quantity: i64,

    /// With --check: stop after this many schedules.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_schedules: u64,

    /// With --check: tries per attempt (0: unlimited).
    #[arg(long, value_name = "N")]
    pub max_tries: Option<u32>,

    /// With --check: do not try remedies on an unsafe script (each one
    /// costs another exploration).
    #[arg(long)]
    pub no_remedy: bool,

    #[command(flatten)]
    pub db: DbArgs,
}

/// `racelab explore`: K buyers, one attempt each, one product; a scheduler
/// lets one buyer run its next SQL statement at a time and explores every
/// schedule up to a preemption bound.
#[derive(Debug, Args)]
pub struct ExploreArgs {
    /// Strategy: a built-in name (see `racelab list`) or a path to a .sql file.
    #[arg(short, long, default_value = "naive")]
    pub strategy: String,

    /// Number of buyers, each on its own connection, one attempt each.
    #[arg(short, long, default_value_t = 2)]
    pub buyers: u32,

    /// Initial stock of the one product (small, so a lost update oversells).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub stock: i64,

    /// Units each attempt tries to buy.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub quantity: i64,

    /// Explore the schedules with at most P preemptions (switches away from
    /// a buyer that could have gone on), or `all` of them.
    #[arg(short, long, default_value = "2", value_name = "P|all")]
    pub preemptions: String,

    /// Replay one schedule: which buyer takes each step, e.g. "1 1 2 2 1";
    /// after the list, the running buyer goes on, then the lowest-numbered.
    #[arg(long, value_name = "BUYERS")]
    pub schedule: Option<String>,

    /// Stop after this many schedules (the result is then not complete).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_schedules: u64,

    /// Tries per attempt for serialization failures, deadlocks and \retry (0: unlimited).
    #[arg(long, value_name = "N")]
    pub max_tries: Option<u32>,

    /// Seed of the buyers' `random()`; fixed, so that schedules replay.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Fail (exit 1) unless the verdict is this: `safe` needs every schedule
    /// of the bound explored and none unsafe; `oversold`, one that oversold.
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,

    /// Write the counterexample (or the replayed schedule) as a PostgreSQL
    /// isolation-tester spec to FILE.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,

    /// Run one schedule in the terminal, waiting for Enter (or a buyer
    /// number) before each step.
    #[arg(long)]
    pub step: bool,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// `racelab proxy`: a PostgreSQL wire-protocol proxy that records.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The server to relay to: a postgres:// URL or HOST:PORT. Only its
    /// address is used: each client authenticates to the server itself,
    /// through the proxy.
    #[arg(long, value_name = "URL")]
    pub upstream: String,

    /// The address to listen on (port 0: any free port, printed at start).
    /// Clients connect in plain text: the proxy answers SSLRequest with `N`.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: String,

    /// Write every connection's statements, bound values, results, errors
    /// and transactions to FILE as JSON Lines (never a password).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Print nothing but the listening address.
    #[arg(long)]
    pub quiet: bool,
}

/// A service racelab starts (or awaits) behind its wire proxy (`http`).
#[derive(Debug, Args, Default)]
pub struct ServiceArgs {
    /// Start the service with this shell command (`sh -c`) before the race,
    /// its database reached through racelab's wire proxy: `DATABASE_URL`
    /// and any `{database_url}` in CMD are the proxy's URL. The database
    /// is --database-url, else an embedded throwaway cluster. The service's
    /// whole process group is stopped at the end; the result records its
    /// statements, transactions and the anomalies they show.
    #[arg(long, value_name = "CMD")]
    pub service: Option<String>,

    /// A URL that answers (any HTTP status) once the service is ready
    /// (default: the target's origin).
    #[arg(long, value_name = "URL")]
    pub service_ready: Option<String>,

    /// Seconds to wait for the service to answer before giving up.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub service_timeout: f64,

    /// Where the service's output goes (default: service-TIME.log in --out).
    #[arg(long, value_name = "FILE", requires = "service")]
    pub service_log: Option<PathBuf>,

    /// Listen on ADDR with racelab's wire proxy for a service you start
    /// yourself, with its DATABASE_URL at ADDR (the database: --database-url,
    /// else an embedded cluster).
    #[arg(long, value_name = "ADDR", conflicts_with = "service")]
    pub db_proxy: Option<String>,

    /// Also write the proxy's record (every statement, as `racelab proxy
    /// --record` does) to FILE as JSON Lines.
    #[arg(long, value_name = "FILE")]
    pub db_record: Option<PathBuf>,
}
