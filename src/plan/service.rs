//! The plan of `racelab http`: the flags (or a flow file), the users, the
//! truth and the resets validated into an `http::Service`, before anything
//! is sent. The request of the flags alone becomes a flow of one race step.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};

use crate::cli::{self, HttpArgs};
use crate::error::bad_input;
use crate::http::flow::users::Users;
use crate::http::flow::{file, Flow, Phase, Selector, StatusMap, Step, UrlTemplate};
use crate::http::template::{Context, Names, Template};
use crate::http::{self, lane, truth};
use crate::report::Output;
use crate::run::Pipeline;
use crate::trace::MAX_TRACED_BUYERS;

/// The flags of `racelab http` that say what is sent, read before the
/// workload ones: a wrong URL or flow is the first thing to hear about.
#[derive(Debug)]
pub struct Request {
    users: Option<Users>,
    headers: HeaderMap,
    /// `-H` values with placeholders (kept as templates for the flags'
    /// request; a flow parses them per step).
    templated: Vec<(HeaderName, String)>,
    buyer_name: (String, String),
    statuses: StatusMap,
}

pub fn request_of(a: &HttpArgs) -> anyhow::Result<Request> {
    if a.timeout.is_some() {
        return Err(bad_input(
            "racelab http has no --timeout: the per-request limit is --request-timeout MS \
             (--timeout is the per-statement limit of racelab run)",
        ));
    }
    let r = &a.request;
    if a.flow.flow.is_some() {
        for (flag, given) in [
            ("--method", r.method.is_some()),
            ("--body", r.body.is_some()),
        ] {
            if given {
                return Err(bad_input(format!(
                    "{flag} is the request of the flags; with --flow each step has its own \
                     (request = \"METHOD PATH\", body = '...'): drop {flag}"
                )));
            }
        }
    }
    let mut headers = HeaderMap::new();
    let mut templated = Vec::new();
    for h in &r.headers {
        let Some((k, v)) = h.split_once(':') else {
            return Err(bad_input(format!(
                "--header {k:?}: expected `Name: value`",
                k = h.split(':').next().unwrap_or("")
            )));
        };
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| bad_input(format!("--header {:?}: not a header name", k.trim())))?;
        if v.contains("{{") {
            templated.push((name, v.trim().to_string()));
            continue;
        }
        // The value is not quoted back: a header may carry a credential.
        let value = HeaderValue::from_str(v.trim()).map_err(|_| {
            bad_input(format!(
                "--header {name}: the value is not valid in a header"
            ))
        })?;
        headers.append(name, value);
    }
    let buyer_name = match &r.buyer_name {
        None => (String::new(), String::new()),
        Some(p) => match p.split_once("{n}") {
            Some((pre, post)) => (pre.to_string(), post.to_string()),
            None => {
                return Err(bad_input(format!(
                    "--buyer-name {p:?} has no {{n}} (where the buyer's number goes), e.g. 'user-{{n}}'"
                )))
            }
        },
    };
    let statuses = StatusMap {
        success: r.success.clone(),
        sold_out: r.sold_out.clone(),
        rejected: r.rejected.clone(),
    };
    statuses.check(|k| format!("--{}", k.replace('_', "-")))?;
    let users = a
        .flow
        .users
        .as_deref()
        .map(|p| Users::load(p, a.flow.users_cycle))
        .transpose()?;
    Ok(Request {
        users,
        headers,
        templated,
        buyer_name,
        statuses,
    })
}

/// The flow the buyers run: the file's, or the flags' one request.
fn flow_of(a: &HttpArgs, req: &Request, products: u32) -> anyhow::Result<Flow> {
    let columns: Vec<String> = req
        .users
        .as_ref()
        .map_or_else(Vec::new, |u| u.columns.clone());
    let Some(path) = &a.flow.flow else {
        return flags_flow(a, req, &columns);
    };
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| bad_input(format!("--flow {shown}: {e}")))?;
    // `-H` headers with placeholders go to every step that knows their
    // variables (see `file::parse`).
    let headers = req.headers.clone();
    let cx = file::Inputs {
        base: &a.url,
        users: &columns,
        statuses: &req.statuses,
        headers: &headers,
        templated: &req.templated,
        products,
    };
    file::parse(&shown, &text, &cx)
}

/// The request of the flags as a flow of one race step.
fn flags_flow(a: &HttpArgs, req: &Request, columns: &[String]) -> anyhow::Result<Flow> {
    let r = &a.request;
    let mut names = Names::default();
    let user_slots = columns.iter().map(|c| names.slot(c)).collect();
    let known = names.len();
    let method_text = r.method.as_deref().unwrap_or("POST");
    let method = Method::from_bytes(method_text.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| bad_input(format!("--method {method_text:?} is not an HTTP method")))?;
    let url = UrlTemplate::parse(&a.url, "the target URL", &names, known)?;
    let mut fixed_headers = req.headers.clone();
    let mut headers = Vec::new();
    for (name, v) in &req.templated {
        let t = Template::parse(
            v,
            &format!("--header {name}"),
            Context::Header,
            &names,
            known,
        )?;
        headers.push((name.clone(), t));
    }
    let content_type = fixed_headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let body = match &r.body {
        None => None,
        Some(b) => {
            let ctx = match &content_type {
                None => Context::Json,
                Some(ct) if ct.contains("json") => Context::Json,
                Some(ct) if ct.contains("x-www-form-urlencoded") => Context::Form,
                Some(_) if b.trim_start().starts_with(['{', '[']) => Context::Json,
                Some(_) => Context::Raw,
            };
            if content_type.is_none() {
                fixed_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Some(Template::parse(b, "--body", ctx, &names, known)?)
        }
    };
    let step = Step {
        name: "request".into(),
        request: format!("{method} {}", url.shown_path()),
        method,
        url,
        headers,
        fixed_headers,
        body,
        extract: Vec::new(),
        expect: Vec::new(),
        statuses: req.statuses.clone(),
        phase: Phase::Race,
        every: false,
        buyers: Selector::All,
    };
    Ok(Flow {
        steps: vec![step],
        names,
        user_slots,
        vars: Vec::new(),
        file: None,
    })
}

/// The HTTP service: where the truth comes from, the resets, the client.
pub fn service_of(
    request: Box<Request>,
    a: &HttpArgs,
    output: &Output,
    pipeline: &mut Pipeline,
    proxied: bool,
) -> anyhow::Result<http::Service> {
    let t = &a.truth;
    let connect_timeout = super::connect_timeout(t.connect_timeout)?;
    let db = match (&t.verify_sql, &t.reset_sql, &t.database_url) {
        (None, None, _) => None,
        (_, _, Some(url)) => Some(truth::ServiceDb::new(url, connect_timeout)?),
        // The embedded cluster the service gets: known once it runs.
        (_, _, None) if proxied => None,
        (_, _, None) => {
            return Err(bad_input(
                "--verify-sql and --reset-sql need --database-url (or DATABASE_URL): the service's database",
            ))
        }
    };
    let declared_stock = a.scenario.stock;
    let source = if let Some(sql) = &t.verify_sql {
        if sql.trim().is_empty() {
            return Err(bad_input(
                "--verify-sql is empty: give a SELECT returning `stock`",
            ));
        }
        truth::Source::Sql { sql: sql.clone() }
    } else if let Some(u) = &t.stock_url {
        truth::Source::StockUrl {
            url: parse_url("--stock-url", u)?,
            stock: truth::JsonExpr::parse("--stock-json-path", &t.stock_json_path)?,
            sold: t
                .sold_json_path
                .as_deref()
                .map(|e| truth::JsonExpr::parse("--sold-json-path", e))
                .transpose()?,
        }
    } else if declared_stock.is_some() {
        truth::Source::Belief
    } else {
        return Err(bad_input(
            "racelab http needs the stock to audit against: --verify-sql SQL --database-url URL \
             (the service's database), --stock-url URL (its stock endpoint), or --stock N \
             (the initial stock, checked against the successes racelab counts)",
        ));
    };
    let reset_url = t
        .reset_url
        .as_deref()
        .map(|u| parse_url("--reset-url", u))
        .transpose()?;
    // The requests' spans, for the service's trace.
    pipeline.trace |= proxied;
    let sc = &pipeline.scenario;
    if output.trace {
        if sc.buyers > MAX_TRACED_BUYERS {
            return Err(bad_input(format!(
                "--trace records every request and is for small runs: {} buyers is more than \
                 {MAX_TRACED_BUYERS}; add --buyers 10 (or fewer)",
                sc.buyers
            )));
        }
        if sc.duration_s > 0.0 {
            return Err(bad_input(
                "--trace cannot be used with --duration: a timed run has no bound on its \
                 requests; use --attempts instead",
            ));
        }
    }
    let flow = flow_of(a, &request, sc.products)?;
    flow.check_buyers(sc.buyers)?;
    if let Some(users) = &request.users {
        users.check_buyers(sc.buyers)?;
    }
    if !flow.is_file() {
        let step = &flow.steps[0];
        if let Some(template) = &step.body {
            check_json_body(template, &step.fixed_headers, &flow, &request, sc.quantity)?;
        }
    }

    let ms = a.request.request_timeout;
    let timeout = (ms > 0).then(|| Duration::from_millis(ms));
    let mut client = reqwest::Client::builder()
        .user_agent(concat!("racelab/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(None);
    if let Some(t) = timeout {
        client = client.connect_timeout(t);
    }
    let roots = match &a.request.cacert {
        Some(path) => http::net::read_pem(path).map_err(|e| bad_input(format!("--cacert {e}")))?,
        None => Vec::new(),
    };
    for cert in &roots {
        let cert = reqwest::Certificate::from_der(cert)
            .map_err(|e| bad_input(format!("--cacert: a certificate reqwest cannot use: {e}")))?;
        client = client.add_root_certificate(cert);
    }
    let client = client
        .build()
        .map_err(|e| anyhow::anyhow!("could not build the HTTP client: {e}"))?;
    // A request is sent once: racelab cannot know whether a service may
    // see it twice. The service has no think time or pool of racelab's:
    // each buyer sends its requests on its own connection, back to back.
    pipeline.max_tries = 1;
    let sc = &mut pipeline.scenario;
    sc.think_ms = 0;
    sc.think_jitter_ms = 0;
    sc.connections = 0;
    if a.scenario.scenario == "default" {
        sc.name = "http".into();
    }
    let audited = flow
        .race_steps()
        .last()
        .map(|(_, s)| s)
        .expect("a race step");
    sc.description = match &flow.file {
        Some(f) => format!("flow {f} against {}", http::shown_text(&a.url)),
        None => format!("{} {}", audited.method, audited.url.shown()),
    };
    let protocol = if a.request.http2 {
        lane::Protocol::Http2
    } else {
        lane::Protocol::Http1
    };
    let sync = match a.request.sync {
        // Explored requests leave one by one: nothing to release together.
        _ if a.explore.explore => lane::Sync::None,
        cli::SyncMode::LastByte => lane::Sync::LastByte,
        cli::SyncMode::None => lane::Sync::None,
    };
    let direct = !http::wire::proxied();
    if !direct {
        // Only a proxy in the environment makes racelab hand requests to
        // reqwest, which writes each one whole.
        if protocol == lane::Protocol::Http2 {
            return Err(bad_input(
                "--http2: racelab speaks HTTP/2 on its own connections, but a proxy is set in \
                 the environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY): unset it, or drop --http2",
            ));
        }
        if sync == lane::Sync::LastByte {
            output.note(
                "note: a proxy is set in the environment: requests go through it whole, \
                 without last-byte synchronisation (--sync none)",
            );
        }
    }
    let lanes = lane::HttpLanes {
        client,
        flow,
        users: request.users,
        buyer_name: request.buyer_name,
        timeout,
        direct,
        protocol,
        sync,
        roots,
        cookies: !a.flow.no_cookies,
        trace_bodies: a.flow.trace_bodies,
        opened: Default::default(),
    };
    Ok(http::Service {
        lanes: std::sync::Arc::new(lanes),
        source,
        declared_stock,
        db,
        reset_url,
        reset_sql: t.reset_sql.clone(),
        max_setup_failures: a.flow.max_setup_failures,
        watch: None,
    })
}

/// A body sent as JSON (by its `Content-Type`, racelab's default for a
/// body, or by its first character) is rendered once for buyer 1 and
/// parsed before the race: a template that makes invalid JSON would
/// otherwise turn every purchase into a 400 nobody asked for. The users'
/// values stand in as `x` (they are secrets: never shown).
fn check_json_body(
    template: &Template,
    headers: &HeaderMap,
    flow: &Flow,
    req: &Request,
    qty: i64,
) -> anyhow::Result<()> {
    let mut values = vec!["x".to_string(); flow.names.len()];
    values[http::template::BUYER] = format!("{}1{}", req.buyer_name.0, req.buyer_name.1);
    values[http::template::ATTEMPT] = "1".into();
    values[http::template::QTY] = qty.to_string();
    values[http::template::PRODUCT] = "1".into();
    let sample = template.render(&values);
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let json = content_type.contains("json") || sample.trim_start().starts_with(['{', '[']);
    if !json {
        return Ok(());
    }
    let Err(e) = serde_json::from_str::<serde_json::Value>(&sample) else {
        return Ok(());
    };
    let fix = if template.has_unquoted_buyer() {
        "put {{buyer}} in quotes, \"{{buyer}}\": its value is the buyer's name, which is text"
            .to_string()
    } else {
        "make the template render JSON (placeholders whose values are text go in quotes, \
         e.g. \"{{buyer}}\"), or send another Content-Type with -H"
            .to_string()
    };
    Err(bad_input(format!(
        "--body is not valid JSON ({e}) once rendered for buyer 1: {sample}; it is sent as \
         {content_type}: {fix}"
    )))
}

pub fn parse_url(flag: &str, text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).map_err(|e| {
        bad_input(format!(
            "{flag} {text:?} is not a URL ({e}): expected e.g. http://127.0.0.1:8080/purchase"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_input(format!(
            "{flag} must start with http:// or https://, got {}://",
            url.scheme()
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bad, plan};
    use std::time::Duration;

    use crate::cli::Cli;
    use crate::plan::TargetPlan;
    use crate::verdict::Expect;

    #[test]
    fn http_shares_the_workload_flags_and_has_its_own_timeout() {
        let p = plan(&[
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "3",
            "--buyers",
            "4",
            "--attempts",
            "2",
            "--quantity",
            "2",
            "--seed",
            "5",
            "--request-timeout",
            "700",
            "--expect",
            "safe",
        ])
        .unwrap();
        let TargetPlan::Http(svc) = &p.target else {
            panic!("an http plan")
        };
        assert_eq!(svc.declared_stock, Some(3));
        assert_eq!(svc.lanes.timeout, Some(Duration::from_millis(700)));
        let sc = &p.pipeline.scenario;
        assert_eq!((sc.buyers, sc.attempts_per_buyer, sc.quantity), (4, 2, 2));
        // No think time, pool or retries of racelab's own for a service.
        assert_eq!((sc.think_ms, sc.think_jitter_ms, sc.connections), (0, 0, 0));
        assert_eq!(p.pipeline.max_tries, 1);
        assert_eq!(sc.name, "http");
        assert_eq!(p.gate.expect, Some(Expect::Safe));
        // A scenario with think time and jitter still races without them.
        let p = plan(&[
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "3",
            "--scenario",
            "flash-sale",
        ])
        .unwrap();
        let sc = &p.pipeline.scenario;
        assert_eq!(
            (sc.name.as_str(), sc.buyers, sc.think_ms),
            ("flash-sale", 50, 0)
        );
    }

    #[test]
    fn a_json_body_is_checked_for_a_sample_buyer() {
        fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
            let mut a = vec!["http", "http://127.0.0.1:9/buy", "--stock", "1"];
            a.extend_from_slice(extra);
            a
        }
        let m = bad(&with(&[
            "--buyer-name",
            "user-{n}",
            "--body",
            r#"{"buyer": {{buyer}}, "qty": {{qty}}}"#,
        ]));
        assert!(m.contains(r#"{"buyer": user-1, "qty": 1}"#), "{m}");
        assert!(
            m.contains(r#""{{buyer}}""#) && m.contains("application/json"),
            "{m}"
        );
        // A number for a name is JSON; so is a quoted name.
        plan(&with(&["--body", r#"{"buyer": {{buyer}}}"#])).unwrap();
        plan(&with(&[
            "--buyer-name",
            "user-{n}",
            "--body",
            r#"{"buyer": "{{buyer}}"}"#,
        ]))
        .unwrap();
        // Sent as a form, it is not JSON and not checked; but a body that
        // looks like JSON is, whatever its Content-Type.
        let form = ["-H", "Content-Type: application/x-www-form-urlencoded"];
        let mut args = form.to_vec();
        args.extend(["--body", "buyer={{buyer}}&qty={{qty}}"]);
        plan(&with(&args)).unwrap();
        let mut args = form.to_vec();
        args.extend(["--body", "{buyer: {{buyer}}}"]);
        let m = bad(&with(&args));
        assert!(
            m.contains("{buyer: 1}") && m.contains("x-www-form-urlencoded"),
            "{m}"
        );
    }

    #[test]
    fn the_buyer_name_help_shows_its_placeholder() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let http = cli.find_subcommand_mut("http").expect("http");
        for help in [http.render_long_help(), http.render_help()] {
            let text = help.to_string().replace(char::is_whitespace, "");
            assert!(text.contains("{n}isthebuyer'snumber"), "{help}");
            assert!(text.contains("'user-{n}'"), "{help}");
        }
    }

    #[test]
    fn http_needs_a_truth_and_no_trace() {
        assert!(
            bad(&["http", "http://127.0.0.1:9/buy"]).contains("needs the stock to audit against")
        );
        assert!(bad(&[
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "1",
            "--trace",
            "--buyers",
            "51"
        ])
        .contains("more than 50"));
        assert!(bad(&["http", "ftp://x/buy", "--stock", "1"]).contains("http://"));
    }
}
