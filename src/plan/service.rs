//! `racelab http`'s flags: the purchase request every buyer sends (URL,
//! method, headers, body template, buyer names), where the truth comes
//! from and how the service is reset, validated into an `http::Service`.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};

use super::connect_timeout;
use crate::cli::{self, HttpArgs};
use crate::error::bad_input;
use crate::http::{self, h1, lane, template::Template, truth};
use crate::report::Output;
use crate::run::Pipeline;

/// The purchase request of `racelab http`, validated.
pub(super) struct Request {
    url: Url,
    method: Method,
    headers: HeaderMap,
    body: Option<Template>,
    buyer_name: (String, String),
}

pub(super) fn request_of(a: &HttpArgs) -> anyhow::Result<Request> {
    if a.timeout.is_some() {
        return Err(bad_input(
            "racelab http has no --timeout: the per-request limit is --request-timeout MS \
             (--timeout is the per-statement limit of racelab run)",
        ));
    }
    let r = &a.request;
    let url = parse_url("the target URL", &a.url)?;
    let method = Method::from_bytes(r.method.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| bad_input(format!("--method {:?} is not an HTTP method", r.method)))?;
    let mut headers = HeaderMap::new();
    for h in &r.headers {
        let Some((k, v)) = h.split_once(':') else {
            return Err(bad_input(format!("--header {h:?}: expected `Name: value`")));
        };
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| bad_input(format!("--header {h:?}: {k:?} is not a header name")))?;
        let value = HeaderValue::from_str(v.trim()).map_err(|_| {
            bad_input(format!(
                "--header {h:?}: the value is not valid in a header"
            ))
        })?;
        headers.append(name, value);
    }
    let body = r.body.as_deref().map(Template::parse).transpose()?;
    if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
    let lists = [
        ("--success", &r.success),
        ("--sold-out", &r.sold_out),
        ("--rejected", &r.rejected),
    ];
    for (flag, codes) in lists {
        if let Some(c) = codes.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(bad_input(format!(
                "{flag}: {c} is not an HTTP status code (100-599)"
            )));
        }
    }
    for (i, (fa, ca)) in lists.iter().enumerate() {
        for (fb, cb) in &lists[i + 1..] {
            if let Some(c) = ca.iter().find(|c| cb.contains(c)) {
                return Err(bad_input(format!(
                    "status {c} is in both {fa} and {fb}; give each code one meaning"
                )));
            }
        }
        if r.success.is_empty() && *fa != "--success" {
            if let Some(c) = ca.iter().find(|c| (200..300).contains(*c)) {
                return Err(bad_input(format!(
                    "status {c} is in {fa} but every 2xx means success by default; \
                     list the success codes with --success"
                )));
            }
        }
    }
    Ok(Request {
        url,
        method,
        headers,
        body,
        buyer_name,
    })
}

/// The HTTP service: where the truth comes from, the resets, the client.
pub(super) fn service_of(
    request: Box<Request>,
    a: &HttpArgs,
    output: &Output,
    pipeline: &mut Pipeline,
) -> anyhow::Result<http::Service> {
    let t = &a.truth;
    let connect_timeout = connect_timeout(t.connect_timeout)?;
    let db = match (&t.verify_sql, &t.reset_sql, &t.database_url) {
        (None, None, _) => None,
        (_, _, Some(url)) => Some(truth::ServiceDb::new(url, connect_timeout)?),
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
    if output.trace {
        return Err(bad_input(
            "--trace records the SQL statements of a strategy; racelab http sends requests \
             and has none (use --histogram for the latency charts)",
        ));
    }

    let ms = a.request.request_timeout;
    let timeout = (ms > 0).then(|| Duration::from_millis(ms));
    let mut client = reqwest::Client::builder()
        .user_agent(concat!("racelab/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
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
    let Request {
        url,
        method,
        headers,
        body,
        buyer_name,
    } = *request;
    if let Some(template) = &body {
        check_json_body(template, &headers, &buyer_name, pipeline.scenario.quantity)?;
    }
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
    sc.description = format!("{method} {}", http::shown(&url));
    let direct = h1::Target::of(&url, &method, &headers);
    let protocol = if a.request.http2 {
        lane::Protocol::Http2
    } else {
        lane::Protocol::Http1
    };
    let sync = match a.request.sync {
        cli::SyncMode::LastByte => lane::Sync::LastByte,
        cli::SyncMode::None => lane::Sync::None,
    };
    if direct.is_none() {
        // Only a proxy in the environment makes racelab hand requests to
        // reqwest, which writes each one whole.
        if protocol == lane::Protocol::Http2 {
            return Err(bad_input(
                "--http2: racelab speaks HTTP/2 on its own connections, but a proxy is set in                  the environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY): unset it, or drop --http2",
            ));
        }
        if sync == lane::Sync::LastByte {
            output.note(
                "note: a proxy is set in the environment: requests go through it whole,                  without last-byte synchronisation (--sync none)",
            );
        }
    }
    let lanes = lane::HttpLanes {
        direct,
        protocol,
        sync,
        roots,
        opened: Default::default(),
        client,
        method,
        url,
        headers,
        body,
        buyer_name,
        timeout,
        statuses: lane::StatusMap {
            success: a.request.success.clone(),
            sold_out: a.request.sold_out.clone(),
            rejected: a.request.rejected.clone(),
        },
    };
    Ok(http::Service {
        lanes: std::sync::Arc::new(lanes),
        source,
        declared_stock,
        db,
        reset_url,
        reset_sql: t.reset_sql.clone(),
    })
}

/// A body sent as JSON (by its `Content-Type`, racelab's default for a
/// body, or by its first character) is rendered once for buyer 1 and
/// parsed before the race: a template that makes invalid JSON would
/// otherwise turn every purchase into a 400 nobody asked for.
fn check_json_body(
    template: &Template,
    headers: &HeaderMap,
    buyer_name: &(String, String),
    qty: i64,
) -> anyhow::Result<()> {
    let name = format!("{}1{}", buyer_name.0, buyer_name.1);
    let sample = template.render(&http::template::Values {
        buyer: &name,
        attempt: 1,
        qty,
        product: 1,
    });
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

fn parse_url(flag: &str, text: &str) -> anyhow::Result<Url> {
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
        assert!(
            bad(&["http", "http://127.0.0.1:9/buy", "--stock", "1", "--trace"]).contains("--trace")
        );
        assert!(bad(&["http", "ftp://x/buy", "--stock", "1"]).contains("http://"));
    }
}
