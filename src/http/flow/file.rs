//! A flow file (`--flow FILE.toml`), read key by key into a `Flow`: every
//! key known (a typo'd one named with the closest known key), every step
//! with a `request`, one race, every placeholder a variable known where it
//! stands. Errors name the file, the step and the key.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::Method;
use toml::{Table, Value};

use super::{Extract, Flow, Phase, Selector, StatusMap, Step, UrlTemplate};
use crate::error::bad_input;
use crate::http::template::{Context, Names, Template, ATTEMPT, PRODUCT};

const TOP_KEYS: [&str; 3] = ["step", "race", "vars"];
const STEP_KEYS: [&str; 12] = [
    "name", "request", "headers", "body", "extract", "expect", "race", "success", "sold_out",
    "rejected", "every", "buyers",
];
const RACE_KEYS: [&str; 1] = ["steps"];

/// What a flow needs from the rest of the command line.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The positional URL: the base step paths resolve against.
    pub base: &'a str,
    /// The users file's columns.
    pub users: &'a [String],
    /// The flags' status mapping: a race step's default.
    pub statuses: &'a StatusMap,
    /// `-H` headers, sent with every step.
    pub headers: &'a HeaderMap,
    /// `-H` headers whose values hold placeholders.
    pub templated: &'a [(HeaderName, String)],
    /// Products raced (`{{product}}` is per attempt when more than one).
    pub products: u32,
}

/// Read and validate the flow in `text` (from the file `shown`).
pub fn parse(shown: &str, text: &str, cx: &Inputs<'_>) -> anyhow::Result<Flow> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        bad_input(format!("{shown}: {}", one_line(&e.to_string())))
    })?;
    let at = |what: &str| format!("{shown}: {what}");
    check_keys(&table, &TOP_KEYS, &at("the top level"))?;
    let mut names = Names::default();
    let user_slots = cx.users.iter().map(|c| names.slot(c)).collect();
    let mut vars = Vec::new();
    if let Some(v) = table.get("vars") {
        let Value::Table(t) = v else {
            return Err(bad_input(at(
                "`vars` must be a table: [vars] name = \"value\"",
            )));
        };
        for (k, v) in t {
            if names.find(k).is_some() {
                return Err(bad_input(at(&format!(
                    "vars.{k}: {{{{{k}}}}} is already a built-in or users-file variable"
                ))));
            }
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Integer(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Boolean(b) => b.to_string(),
                _ => return Err(bad_input(at(&format!("vars.{k}: a string or a number")))),
            };
            vars.push((names.slot(k), value));
        }
    }
    let raw_steps = match table.get("step") {
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(bad_input(at("`step` must be an array of tables: [[step]]"))),
        None => {
            return Err(bad_input(at(
                "no step: a flow is a list of [[step]] tables, one of them with race = true",
            )))
        }
    };
    // A `[[race]]` group names the steps released together.
    let mut grouped: Vec<String> = Vec::new();
    if let Some(r) = table.get("race") {
        let Value::Array(groups) = r else {
            return Err(bad_input(at(
                "`race` must be an array of tables: [[race]] steps = [...]",
            )));
        };
        if groups.len() > 1 {
            return Err(bad_input(at(
                "more than one [[race]] group: a flow has one race; put every step released together in one group",
            )));
        }
        for g in groups {
            let Value::Table(g) = g else {
                return Err(bad_input(at("[[race]] must be a table")));
            };
            check_keys(g, &RACE_KEYS, &at("[[race]]"))?;
            match g.get("steps") {
                Some(Value::Array(a)) if !a.is_empty() => {
                    for s in a {
                        let Value::String(s) = s else {
                            return Err(bad_input(at("[[race]] steps: the names of steps")));
                        };
                        grouped.push(s.clone());
                    }
                }
                _ => {
                    return Err(bad_input(at(
                        "[[race]] needs steps = [\"step\", ...]: the steps released together",
                    )))
                }
            }
        }
    }
    // Names first, then which are raced.
    let mut tables = Vec::new();
    for (i, s) in raw_steps.iter().enumerate() {
        let Value::Table(t) = s else {
            return Err(bad_input(at("each [[step]] must be a table")));
        };
        let name = match t.get("name") {
            None => format!("step-{}", i + 1),
            Some(Value::String(n)) if !n.trim().is_empty() => n.trim().to_string(),
            Some(_) => {
                return Err(bad_input(at(&format!(
                    "step {}: `name` must be a non-empty string",
                    i + 1
                ))))
            }
        };
        if tables.iter().any(|(n, _): &(String, &Table)| *n == name) {
            return Err(bad_input(at(&format!(
                "two steps are named {name:?}; give each step its own name"
            ))));
        }
        tables.push((name, t));
    }
    for g in &grouped {
        if !tables.iter().any(|(n, _)| n == g) {
            let hint = crate::suggest::closest(g, tables.iter().map(|(n, _)| n.as_str()))
                .map_or(String::new(), |c| format!("; did you mean {c:?}?"));
            return Err(bad_input(at(&format!(
                "[[race]] steps: no step is named {g:?}{hint}"
            ))));
        }
    }
    let raced: Vec<bool> = tables
        .iter()
        .map(|(n, t)| {
            let marked = match t.get("race") {
                None => Ok(false),
                Some(Value::Boolean(b)) => Ok(*b),
                Some(_) => Err(bad_input(at(&format!("step {n:?}, race: true or false")))),
            };
            marked.map(|m| m || grouped.contains(n))
        })
        .collect::<anyhow::Result<_>>()?;
    let Some(first) = raced.iter().position(|r| *r) else {
        return Err(bad_input(at(
            "no race step: mark the step to release together with race = true (e.g. the checkout)",
        )));
    };
    let last = raced.iter().rposition(|r| *r).unwrap_or(first);
    if let Some(gap) = (first..=last).find(|i| !raced[*i]) {
        return Err(bad_input(at(&format!(
            "step {:?} stands between race steps: the race steps are released together, so \
             they follow one another; move it before or after them",
            tables[gap].0
        ))));
    }
    let mut steps = Vec::new();
    // Names known where a step stands: the race steps see what the steps
    // before them extract, not what other race steps do.
    let mut race_known = None;
    let mut applied = vec![false; cx.templated.len()];
    for (i, (name, t)) in tables.iter().enumerate() {
        let phase = if i < first {
            Phase::Before
        } else if i <= last {
            Phase::Race
        } else {
            Phase::After
        };
        let known = match phase {
            Phase::Race => *race_known.get_or_insert(names.len()),
            _ => names.len(),
        };
        let step = step(shown, name, t, (phase, known), &mut names, cx, &mut applied)?;
        steps.push(step);
    }
    // A `-H` header goes with every step that knows its variables (an
    // `Authorization: Bearer {{token}}` from the step after the login on);
    // one that no step can send is bad input.
    for ((hn, v), used) in cx.templated.iter().zip(applied) {
        if !used {
            Template::parse(
                v,
                &format!("--header {hn}"),
                Context::Header,
                &names,
                names.len(),
            )?;
            return Err(bad_input(format!(
                "--header {hn}: no step can send it: its variables are set only by the last steps"
            )));
        }
    }
    Ok(Flow {
        steps,
        names,
        user_slots,
        vars,
        file: Some(shown.to_string()),
    })
}

/// Unknown keys of `t` are bad input, with the closest known key.
fn check_keys(t: &Table, known: &[&str], place: &str) -> anyhow::Result<()> {
    for k in t.keys() {
        if !known.contains(&k.as_str()) {
            let hint = crate::suggest::closest(k, known.iter().copied())
                .map_or(String::new(), |c| format!("; did you mean `{c}`?"));
            return Err(bad_input(format!(
                "{place}: unknown key `{k}`{hint} (known: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One step `name`, standing in `phase` where the first `known` names are
/// known.
fn step(
    shown: &str,
    name: &str,
    t: &Table,
    (phase, known): (Phase, usize),
    names: &mut Names,
    cx: &Inputs<'_>,
    applied: &mut [bool],
) -> anyhow::Result<Step> {
    let place = |key: &str| format!("{shown}: step {name:?}, {key}");
    let bad = |key: &str, why: &str| bad_input(format!("{}: {why}", place(key)));
    check_keys(t, &STEP_KEYS, &format!("{shown}: step {name:?}"))?;
    let Some(request) = t.get("request") else {
        return Err(bad_input(format!(
            "{shown}: step {name:?} has no `request`: add e.g. request = \"POST /checkout\" \
             (METHOD PATH, or METHOD and a full URL)"
        )));
    };
    let Value::String(request) = request else {
        return Err(bad("request", "a string, \"METHOD PATH\""));
    };
    let (method, target) = request
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| {
            bad(
                "request",
                &format!("{request:?} is not \"METHOD PATH\", e.g. \"POST /checkout\""),
            )
        })?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad("request", &format!("{method:?} is not an HTTP method")))?;
    let target = target.trim();
    let full = if target.contains("://") {
        target.to_string()
    } else if target.starts_with('/') {
        format!("{}{target}", cx.base.trim_end_matches('/'))
    } else {
        return Err(bad(
            "request",
            &format!("{target:?}: the path must start with `/` (or be a full URL)"),
        ));
    };
    let url = UrlTemplate::parse(&full, &place("request"), names, known)?;
    let mut fixed_headers = cx.headers.clone();
    let mut headers = Vec::new();
    for ((hn, v), used) in cx.templated.iter().zip(applied.iter_mut()) {
        // Not yet known here (set by a later step): not sent here.
        if let Ok(t) = Template::parse(v, "--header", Context::Header, names, known) {
            headers.push((hn.clone(), t));
            *used = true;
        }
    }
    let mut content_type = None;
    if let Some(h) = t.get("headers") {
        let Value::Table(h) = h else {
            return Err(bad(
                "headers",
                "a table, e.g. headers = { Authorization = \"Bearer {{token}}\" }",
            ));
        };
        for (k, v) in h {
            let key = format!("headers.{k}");
            let hn = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad(&key, &format!("{k:?} is not a header name")))?;
            let Value::String(v) = v else {
                return Err(bad(&key, "a string"));
            };
            let tmpl = Template::parse(v, &place(&key), Context::Header, names, known)?;
            fixed_headers.remove(&hn);
            headers.retain(|(n, _)| *n != hn);
            if hn == CONTENT_TYPE {
                content_type = Some(v.to_ascii_lowercase());
            }
            if tmpl.has_vars() {
                headers.push((hn, tmpl));
            } else {
                let hv =
                    HeaderValue::from_str(v).map_err(|_| bad(&key, "not a valid header value"))?;
                fixed_headers.append(hn, hv);
            }
        }
    }
    if content_type.is_none() {
        content_type = cx
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
    }
    let body = match t.get("body") {
        None => None,
        Some(Value::String(b)) => {
            let json_look = b.trim_start().starts_with(['{', '[']);
            let ctx = match &content_type {
                Some(ct) if ct.contains("json") => Context::Json,
                Some(ct) if ct.contains("x-www-form-urlencoded") => Context::Form,
                Some(_) => Context::Raw,
                None if json_look => Context::Json,
                None => Context::Raw,
            };
            if content_type.is_none() && json_look {
                fixed_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Some(Template::parse(b, &place("body"), ctx, names, known)?)
        }
        Some(_) => return Err(bad("body", "a string (use ''' ... ''' for JSON)")),
    };
    let codes = |key: &str| -> anyhow::Result<Option<Vec<u16>>> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Integer(c) if (100..=599).contains(c) => Ok(*c as u16),
                    _ => Err(bad(key, "a list of HTTP status codes, e.g. [200, 201]")),
                })
                .collect::<anyhow::Result<Vec<u16>>>()
                .map(Some),
            Some(Value::Integer(c)) if (100..=599).contains(c) => Ok(Some(vec![*c as u16])),
            Some(_) => Err(bad(key, "a list of HTTP status codes, e.g. [200, 201]")),
        }
    };
    let flag = |key: &str| -> anyhow::Result<bool> {
        match t.get(key) {
            None => Ok(false),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(bad(key, "true or false")),
        }
    };
    let expect = codes("expect")?.unwrap_or_default();
    let every = flag("every")?;
    let (success, sold_out, rejected) = (codes("success")?, codes("sold_out")?, codes("rejected")?);
    if phase == Phase::Race {
        if t.contains_key("expect") {
            return Err(bad(
                "expect",
                "a race step's answers are mapped by success, sold_out and rejected (default: the flags'); drop expect",
            ));
        }
        if every {
            return Err(bad(
                "every",
                "the race step runs every attempt already; drop every",
            ));
        }
    } else {
        for (k, v) in [
            ("success", &success),
            ("sold_out", &sold_out),
            ("rejected", &rejected),
        ] {
            if v.is_some() {
                return Err(bad(
                    k,
                    "only a race step's answers are mapped to outcomes; a step outside the race \
                     says which statuses let the buyer go on with expect = [200]",
                ));
            }
        }
        if every && phase == Phase::After {
            return Err(bad(
                "every",
                "the steps after the race run every attempt already; drop every",
            ));
        }
    }
    let statuses = StatusMap {
        success: success.unwrap_or_else(|| cx.statuses.success.clone()),
        sold_out: sold_out.unwrap_or_else(|| cx.statuses.sold_out.clone()),
        rejected: rejected.unwrap_or_else(|| cx.statuses.rejected.clone()),
    };
    statuses.check(|k| place(k))?;
    let buyers = match t.get("buyers") {
        None => Selector::All,
        Some(Value::String(s)) => Selector::parse(s).map_err(|e| bad("buyers", &e))?,
        Some(Value::Integer(n)) if *n >= 1 => Selector::Range(*n as u32, *n as u32),
        Some(_) => {
            return Err(bad(
                "buyers",
                "\"odd\", \"even\", \"all\", \"N\" or \"N-M\"",
            ))
        }
    };
    // Before the race, a step runs once per buyer unless `every`: there is
    // no attempt yet, and the product is picked per attempt.
    if phase == Phase::Before && !every {
        let mut used = url.slots().collect::<Vec<_>>();
        used.extend(headers.iter().flat_map(|(_, t)| t.slots()));
        if let Some(b) = &body {
            used.extend(b.slots());
        }
        if used.contains(&ATTEMPT) {
            return Err(bad_input(format!(
                "{}: {{{{attempt}}}} in a step that runs once per buyer, before any attempt: \
                 mark the step every = true to run it before each attempt",
                place("request/headers/body")
            )));
        }
        if used.contains(&PRODUCT) && cx.products > 1 {
            return Err(bad_input(format!(
                "{}: {{{{product}}}} with --products {}: the product is picked per attempt; \
                 mark the step every = true to run it before each attempt",
                place("request/headers/body"),
                cx.products
            )));
        }
    }
    let mut extract = Vec::new();
    if let Some(e) = t.get("extract") {
        let Value::Table(e) = e else {
            return Err(bad(
                "extract",
                "a table, e.g. extract = { token = \"json .token\" }",
            ));
        };
        for (var, how) in e {
            let key = format!("extract.{var}");
            let ok = !var.is_empty()
                && var
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(bad(&key, "a variable name: letters, digits, `_` and `-`"));
            }
            if crate::http::template::BUILT_IN.contains(&var.as_str()) {
                return Err(bad(
                    &key,
                    &format!("{{{{{var}}}}} is a built-in variable; name it otherwise"),
                ));
            }
            let Value::String(how) = how else {
                return Err(bad(
                    &key,
                    "a string: json PATH, header NAME, cookie NAME or regex 'RE'",
                ));
            };
            let how = Extract::parse(how).map_err(|e| bad(&key, &e))?;
            extract.push((names.slot(var), var.clone(), how));
        }
    }
    Ok(Step {
        name: name.to_string(),
        request: format!("{method} {}", url.shown_path()),
        method,
        url,
        headers,
        fixed_headers,
        body,
        extract,
        expect,
        statuses,
        phase,
        every,
        buyers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx<'a>(users: &'a [String], statuses: &'a StatusMap, headers: &'a HeaderMap) -> Inputs<'a> {
        Inputs {
            base: "http://127.0.0.1:9/api/",
            users,
            statuses,
            headers,
            templated: &[],
            products: 1,
        }
    }

    fn flow(text: &str) -> anyhow::Result<Flow> {
        let users = vec!["user".to_string(), "password".to_string()];
        let statuses = StatusMap {
            success: vec![],
            sold_out: vec![409],
            rejected: vec![429],
        };
        let headers = HeaderMap::new();
        parse("shop.toml", text, &cx(&users, &statuses, &headers))
    }

    const SHOP: &str = r#"
[[step]]
name = "login"
request = "POST /login"
body = '{"user": "{{user}}", "password": "{{password}}"}'
extract = { token = "json .token" }
expect = [200]

[[step]]
name = "cart"
request = "POST /cart/items"
headers = { Authorization = "Bearer {{token}}" }
body = '{"product": {{product}}, "qty": {{qty}}}'

[[step]]
name = "checkout"
race = true
request = "POST /checkout"
headers = { Authorization = "Bearer {{token}}" }
success = [201]
sold_out = [409]
"#;

    #[test]
    fn the_shop_flow_reads_as_written() {
        let f = flow(SHOP).unwrap();
        let phases: Vec<Phase> = f.steps.iter().map(|s| s.phase).collect();
        assert_eq!(phases, [Phase::Before, Phase::Before, Phase::Race]);
        let login = &f.steps[0];
        assert_eq!(login.url.shown(), "http://127.0.0.1:9/api/login");
        assert_eq!(login.request, "POST /api/login");
        assert_eq!(login.fixed_headers[CONTENT_TYPE], "application/json");
        let checkout = &f.steps[2];
        assert_eq!(checkout.statuses.success, [201]);
        assert_eq!(checkout.statuses.rejected, [429], "the flags' default");
        assert_eq!(f.secret_slots().len(), 3, "user, password and token");
        f.check_buyers(50).unwrap();
    }

    fn err(text: &str) -> String {
        let e = flow(text).unwrap_err();
        assert!(e.is::<crate::error::BadInput>(), "{e}");
        e.to_string()
    }

    #[test]
    fn mistakes_name_the_step_and_the_key() {
        let e = err(&SHOP.replace(
            "request = \"POST /cart/items\"",
            "reqest = \"POST /cart/items\"",
        ));
        assert!(
            e.contains("step \"cart\": unknown key `reqest`; did you mean `request`?"),
            "{e}"
        );
        let e = err(&SHOP.replace(
            "headers = { Authorization = \"Bearer {{token}}\" }\nbody",
            "headers = { Authorization = \"Bearer {{tokn}}\" }\nbody",
        ));
        assert!(e.contains("step \"cart\", headers.Authorization: unknown variable {{tokn}}; did you mean {{token}}?"), "{e}");
        let e = err(&SHOP.replace("request = \"POST /login\"\n", ""));
        assert!(e.contains("step \"login\" has no `request`"), "{e}");
        let e = err(&SHOP.replace("race = true\n", ""));
        assert!(e.contains("no race step"), "{e}");
        let e = err(&SHOP.replace("json .token", "jsn .token"));
        assert!(
            e.contains("step \"login\", extract.token") && e.contains("did you mean `json`?"),
            "{e}"
        );
        let e = err(&SHOP.replace("{{product}}", "{{attempt}}"));
        assert!(e.contains("every = true"), "{e}");
        let e = err(&format!("raec = 1\n{SHOP}"));
        assert!(
            e.contains("the top level: unknown key `raec`; did you mean `race`?"),
            "{e}"
        );
        let e = err(&SHOP.replace("{{token}}\" }\nsuccess", "{{nope}}\" }\nsuccess"));
        assert!(
            e.contains("step \"checkout\", headers.Authorization: unknown variable {{nope}}"),
            "{e}"
        );
        let e = err(&SHOP.replace("expect = [200]", "expect = [200]\nsuccess = [200]"));
        assert!(e.contains("step \"login\", success"), "{e}");
        let e = err("[[step]\nname = 1");
        assert!(e.starts_with("shop.toml: "), "{e}");
    }

    #[test]
    fn a_race_group_and_selectors() {
        let text = r#"
[[step]]
name = "login"
request = "POST /login"
extract = { sid = "cookie sid" }

[[step]]
name = "voucher"
request = "POST /voucher?code={{code}}"
buyers = "odd"

[[step]]
name = "checkout"
request = "POST /checkout"
buyers = "even"

[[step]]
name = "receipt"
request = "GET /orders/last"

[vars]
code = "SAVE 10"

[[race]]
steps = ["voucher", "checkout"]
"#;
        let f = flow(text).unwrap();
        let raced: Vec<&str> = f.race_steps().map(|(_, s)| s.name.as_str()).collect();
        assert_eq!(raced, ["voucher", "checkout"]);
        assert_eq!(f.steps[3].phase, Phase::After);
        f.check_buyers(4).unwrap();
        let one = text.replace("buyers = \"even\"", "buyers = \"1\"");
        let e = flow(&one).unwrap().check_buyers(4).unwrap_err().to_string();
        assert!(e.contains("buyer 2 runs no race step"), "{e}");
        let e = err(&text.replace("[\"voucher\", \"checkout\"]", "[\"vocher\"]"));
        assert!(
            e.contains("no step is named \"vocher\"; did you mean \"voucher\"?"),
            "{e}"
        );
        let gap = text.replace("[\"voucher\", \"checkout\"]", "[\"login\", \"checkout\"]");
        let e = err(&gap);
        assert!(
            e.contains("step \"voucher\" stands between race steps"),
            "{e}"
        );
    }
}
