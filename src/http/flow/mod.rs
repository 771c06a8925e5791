//! What each buyer of `racelab http` does, as a flow of steps: the steps
//! before the race (a login, a cart filled) run per buyer before the
//! barrier; the race step(s) are released together and audited; the steps
//! after run after. The request of the flags alone is a flow of one race
//! step. Everything here is validated before anything is sent.
//!
//! - `file`: a flow file (`--flow FILE.toml`), read and checked key by key.
//! - `users`: `--users FILE`, one row of variables per buyer.
//! - `cookies`: a buyer's cookie jar.
//! - `secret`: the types that keep secrets out of every rendering.

pub mod cookies;
pub mod file;
pub mod secret;
pub mod users;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::Method;
use reqwest::Url;

use super::template::{Names, Template};
use super::truth::JsonPath;
use super::wire::{Answer, Origin};
use crate::error::bad_input;
use crate::outcome::Outcome;
use cookies::Jar;

/// Which status codes mean what. An empty `success` means any 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMap {
    pub success: Vec<u16>,
    pub sold_out: Vec<u16>,
    pub rejected: Vec<u16>,
}

impl StatusMap {
    pub fn classify(&self, code: u16) -> Outcome {
        let success = if self.success.is_empty() {
            (200..300).contains(&code)
        } else {
            self.success.contains(&code)
        };
        if success {
            Outcome::Succeeded
        } else if self.sold_out.contains(&code) {
            Outcome::SoldOut
        } else if self.rejected.contains(&code) {
            Outcome::Rejected
        } else {
            Outcome::Error
        }
    }

    /// Each code one meaning, each a status code; `what` names the lists
    /// (`--success` or `step "checkout", success`).
    pub fn check(&self, what: impl Fn(&str) -> String) -> anyhow::Result<()> {
        let lists = [
            ("success", &self.success),
            ("sold_out", &self.sold_out),
            ("rejected", &self.rejected),
        ];
        for (name, codes) in lists {
            if let Some(c) = codes.iter().find(|c| !(100..=599).contains(*c)) {
                return Err(bad_input(format!(
                    "{}: {c} is not an HTTP status code (100-599)",
                    what(name)
                )));
            }
        }
        for (i, (fa, ca)) in lists.iter().enumerate() {
            for (fb, cb) in &lists[i + 1..] {
                if let Some(c) = ca.iter().find(|c| cb.contains(c)) {
                    return Err(bad_input(format!(
                        "status {c} is in both {} and {}; give each code one meaning",
                        what(fa),
                        what(fb)
                    )));
                }
            }
            if self.success.is_empty() && *fa != "success" {
                if let Some(c) = ca.iter().find(|c| (200..300).contains(*c)) {
                    return Err(bad_input(format!(
                        "status {c} is in {} but every 2xx means success by default; \
                         list the success codes ({})",
                        what(fa),
                        what("success")
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Which buyers run a step: `all`, `odd`, `even`, `N` or `N-M` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    All,
    Odd,
    Even,
    Range(u32, u32),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let t = text.trim().to_ascii_lowercase();
        let num = |s: &str| s.trim().parse::<u32>().ok().filter(|n| *n >= 1);
        Ok(match t.as_str() {
            "all" | "*" => Selector::All,
            "odd" => Selector::Odd,
            "even" => Selector::Even,
            _ => match t.split_once('-') {
                Some((a, b)) => match (num(a), num(b)) {
                    (Some(a), Some(b)) if a <= b => Selector::Range(a, b),
                    _ => return Err(format!("{text:?} is not a range of buyers like \"1-10\"")),
                },
                None => match num(&t) {
                    Some(n) => Selector::Range(n, n),
                    None => {
                        return Err(format!(
                            "{text:?}: expected \"odd\", \"even\", \"all\", a buyer \"N\" or a range \"N-M\""
                        ))
                    }
                },
            },
        })
    }

    pub fn has(self, buyer: u32) -> bool {
        match self {
            Selector::All => true,
            Selector::Odd => buyer % 2 == 1,
            Selector::Even => buyer % 2 == 0,
            Selector::Range(a, b) => (a..=b).contains(&buyer),
        }
    }
}

/// What a step takes from its response into a variable.
#[derive(Debug, Clone)]
pub enum Extract {
    /// `json PATH`: a value of the JSON body (a string as it is, a number
    /// or boolean as written, an object or array as JSON).
    Json(JsonPath),
    /// `header NAME`: a response header.
    Header(HeaderName),
    /// `cookie NAME`: a cookie the response set (or the jar holds).
    Cookie(String),
    /// `regex 'RE'`: the first capture group (or the whole match) in the body.
    Regex(regex::Regex),
}

impl Extract {
    /// Parse `json .token`, `header X-Token`, `cookie sid`, `regex 'id=(\d+)'`.
    pub fn parse(text: &str) -> Result<Extract, String> {
        let t = text.trim();
        let (kind, arg) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let arg = arg.trim();
        let unquoted = arg
            .strip_prefix('\'')
            .and_then(|a| a.strip_suffix('\''))
            .or_else(|| arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')))
            .unwrap_or(arg);
        if unquoted.is_empty() && matches!(kind, "json" | "header" | "cookie" | "regex") {
            return Err(format!(
                "`{kind}` needs what to take, e.g. `{}`",
                example(kind)
            ));
        }
        match kind {
            "json" => match super::truth::JsonExpr::parse("json", unquoted) {
                Ok(super::truth::JsonExpr::Path(p)) => Ok(Extract::Json(p)),
                Ok(_) => Err(format!(
                    "`json {unquoted}` must be a path like .token or .data.id"
                )),
                Err(e) => Err(e.to_string()),
            },
            "header" => HeaderName::from_bytes(unquoted.as_bytes())
                .map(Extract::Header)
                .map_err(|_| format!("{unquoted:?} is not a header name")),
            "cookie" => Ok(Extract::Cookie(unquoted.to_string())),
            "regex" => regex::Regex::new(unquoted)
                .map(Extract::Regex)
                .map_err(|e| format!("not a regular expression: {e}")),
            other => {
                let hint = crate::suggest::closest(other, ["json", "header", "cookie", "regex"])
                    .map_or(String::new(), |c| format!(" (did you mean `{c}`?)"));
                Err(format!(
                    "{other:?} is not a way to extract{hint}: use `json PATH`, `header NAME`, \
                     `cookie NAME` or `regex 'RE'`"
                ))
            }
        }
    }

    /// The value in `answer` (to `url`, whose cookies `jar` now holds).
    pub fn take(&self, answer: &Answer, url: &Url, jar: &Jar) -> Option<String> {
        match self {
            Extract::Json(path) => {
                let doc: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
                match path.lookup(&doc)? {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
            Extract::Header(name) => answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            Extract::Cookie(name) => {
                let mut fresh = Jar::default();
                fresh.store(url, &answer.headers);
                fresh
                    .get(url, name)
                    .or_else(|| jar.get(url, name))
                    .map(str::to_string)
            }
            Extract::Regex(re) => {
                let body = String::from_utf8_lossy(&answer.body);
                let caps = re.captures(&body)?;
                caps.get(1)
                    .or_else(|| caps.get(0))
                    .map(|m| m.as_str().to_string())
            }
        }
    }
}

fn example(kind: &str) -> &'static str {
    match kind {
        "json" => "json .token",
        "header" => "header X-Token",
        "cookie" => "cookie sessionid",
        _ => "regex 'id=(\\d+)'",
    }
}

/// A step's URL: a fixed origin (scheme, host, port) and a path template.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    /// `scheme://authority`, as given.
    origin_text: String,
    /// The same without a password.
    origin_shown: String,
    pub origin: Origin,
    path: Template,
    path_text: String,
    /// The URL, when the path has no placeholder.
    fixed: Option<Url>,
}

impl UrlTemplate {
    /// `text` is a whole URL; placeholders may stand in its path and
    /// query, not in its scheme, host or port.
    pub fn parse(
        text: &str,
        place: &str,
        names: &Names,
        known: usize,
    ) -> anyhow::Result<UrlTemplate> {
        let bad = |why: String| bad_input(format!("{place}: {why}"));
        let after = text.find("://").map(|i| i + 3).ok_or_else(|| {
            bad(format!(
                "{text:?} is not a URL: expected e.g. http://127.0.0.1:8080/buy"
            ))
        })?;
        let end = text[after..]
            .find(['/', '?', '#'])
            .map_or(text.len(), |i| after + i);
        let (origin_text, path_text) = text.split_at(end);
        if origin_text.contains("{{") {
            return Err(bad(format!(
                "{text:?}: placeholders may stand in the path and query, not in the host"
            )));
        }
        let base = Url::parse(origin_text).map_err(|e| {
            bad(format!(
                "{text:?} is not a URL ({e}): expected e.g. http://127.0.0.1:8080/buy"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad(format!(
                "must start with http:// or https://, got {}://",
                base.scheme()
            )));
        }
        let origin = Origin::of(&base).ok_or_else(|| bad(format!("{text:?} has no host")))?;
        // As shown (results, messages): without a password.
        let mut hidden = base.clone();
        if hidden.password().is_some() {
            let _ = hidden.set_password(Some("***"));
        }
        let origin_shown = hidden.as_str().trim_end_matches('/').to_string();
        let path = Template::parse(
            path_text,
            place,
            super::template::Context::Url,
            names,
            known,
        )?;
        let fixed = if path.has_vars() {
            None
        } else {
            Some(Url::parse(text).map_err(|e| bad(format!("{text:?} is not a URL ({e})")))?)
        };
        Ok(UrlTemplate {
            origin_text: origin_text.to_string(),
            origin_shown,
            origin,
            path,
            path_text: path_text.to_string(),
            fixed,
        })
    }

    /// The URL for `values`.
    pub fn render(&self, values: &[String], scratch: &mut String) -> Result<Url, String> {
        if let Some(u) = &self.fixed {
            return Ok(u.clone());
        }
        self.path.render_into(values, scratch);
        let text = format!("{}{}", self.origin_text, scratch);
        Url::parse(&text).map_err(|e| format!("the URL {} is not valid: {e}", self.shown()))
    }

    /// The URL as written, with its placeholders (never a value): any
    /// query value written in it is a secret as often as not.
    pub fn shown(&self) -> String {
        format!("{}{}", self.origin_shown, self.shown_path())
    }

    /// The path and query as written, with placeholders, and any value
    /// written in the query redacted.
    pub fn shown_path(&self) -> String {
        crate::secret::redact_written(&self.path_text)
    }

    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.path.slots()
    }
}

/// Where a step stands in a buyer's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the race, once per buyer (or before every attempt with
    /// `every = true`).
    Before,
    /// Released together at the barrier, and audited.
    Race,
    /// After the race step(s), each attempt.
    After,
}

/// One validated step.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub method: Method,
    pub url: UrlTemplate,
    /// `METHOD PATH` as written (for the report and the trace).
    pub request: String,
    pub headers: Vec<(HeaderName, Template)>,
    /// Headers without placeholders, ready to send.
    pub fixed_headers: HeaderMap,
    pub body: Option<Template>,
    pub extract: Vec<(usize, String, Extract)>,
    /// Statuses that let the buyer go on (steps outside the race); empty:
    /// any 2xx.
    pub expect: Vec<u16>,
    /// What a race step's answers mean.
    pub statuses: StatusMap,
    pub phase: Phase,
    pub every: bool,
    pub buyers: Selector,
}

impl Step {
    /// Whether `code` lets the buyer go on after this (non-race) step.
    pub fn expected(&self, code: u16) -> bool {
        if self.expect.is_empty() {
            (200..300).contains(&code)
        } else {
            self.expect.contains(&code)
        }
    }

    /// The headers for `values`; a rendered value that cannot stand in a
    /// header fails the request.
    pub fn headers(&self, values: &[String], scratch: &mut String) -> Result<HeaderMap, String> {
        let mut h = self.fixed_headers.clone();
        for (name, t) in &self.headers {
            t.render_into(values, scratch);
            let mut v = HeaderValue::from_str(scratch).map_err(|_| {
                format!("the header {name} is not a valid header value once its variables are filled in")
            })?;
            // A value made from variables may carry a credential.
            v.set_sensitive(true);
            h.append(name.clone(), v);
        }
        Ok(h)
    }
}

/// A validated flow: its steps in order, the names its templates use, and
/// the values of its own variables.
#[derive(Debug, Clone)]
pub struct Flow {
    pub steps: Vec<Step>,
    pub names: Names,
    /// The slots of the users file's columns, in column order.
    pub user_slots: Vec<usize>,
    /// The flow's own variables (`[vars]`): slot and value.
    pub vars: Vec<(usize, String)>,
    /// Where it came from: the file, or None for the request of the flags.
    pub file: Option<String>,
}

impl Flow {
    /// The race steps.
    pub fn race_steps(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase == Phase::Race)
    }

    /// The step whose answers are audited: the last race step.
    pub fn audited(&self) -> &Step {
        self.race_steps()
            .last()
            .map(|(_, s)| s)
            .expect("a flow has a race step")
    }

    /// What the run races against, as a result names it: the audited
    /// step's method and URL (without any password).
    pub fn target(&self) -> String {
        let s = self.audited();
        format!("{} {}", s.method, s.url.shown())
    }

    /// Whether the flow is more than the one request of the flags.
    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }

    /// Slots whose values are secrets: the users' columns and everything
    /// a step extracts.
    pub fn secret_slots(&self) -> Vec<usize> {
        let mut s = self.user_slots.clone();
        for step in &self.steps {
            s.extend(step.extract.iter().map(|(slot, _, _)| *slot));
        }
        s.sort_unstable();
        s.dedup();
        s
    }

    /// Every buyer of `buyers` must run at least one race step.
    pub fn check_buyers(&self, buyers: u32) -> anyhow::Result<()> {
        if let Some(b) = (1..=buyers).find(|b| !self.race_steps().any(|(_, s)| s.buyers.has(*b))) {
            return Err(bad_input(format!(
                "{}: buyer {b} runs no race step (their `buyers` selectors leave it out); \
                 give every buyer a race step, or race fewer buyers",
                self.file.as_deref().unwrap_or("the flow")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        let m = StatusMap {
            success: vec![],
            sold_out: vec![409, 410, 422],
            rejected: vec![429],
        };
        assert_eq!(m.classify(201), Outcome::Succeeded);
        assert_eq!(m.classify(299), Outcome::Succeeded);
        assert_eq!(m.classify(410), Outcome::SoldOut);
        assert_eq!(m.classify(429), Outcome::Rejected);
        assert_eq!(m.classify(500), Outcome::Error);
        assert_eq!(m.classify(302), Outcome::Error);
        let only = StatusMap {
            success: vec![200],
            ..m
        };
        assert_eq!(only.classify(201), Outcome::Error);
        assert_eq!(only.classify(200), Outcome::Succeeded);
    }

    #[test]
    fn a_url_renders_its_path_and_shows_no_password() {
        let mut names = Names::default();
        names.slot("user");
        let u = UrlTemplate::parse(
            "http://me:pw-secret@127.0.0.1:8080/users/{{user}}/cart?b={{buyer}}",
            "url",
            &names,
            names.len(),
        )
        .unwrap();
        assert_eq!(
            u.shown(),
            "http://me:***@127.0.0.1:8080/users/{{user}}/cart?b={{buyer}}"
        );
        let values: Vec<String> = ["7", "1", "1", "1", "a/b c"].map(String::from).to_vec();
        let url = u.render(&values, &mut String::new()).unwrap();
        assert_eq!(url.path(), "/users/a%2Fb%20c/cart");
        assert_eq!(url.query(), Some("b=7"));
        let e = UrlTemplate::parse("http://{{user}}.shop/x", "url", &names, 5).unwrap_err();
        assert!(e.to_string().contains("not in the host"), "{e}");
    }

    #[test]
    fn selectors_pick_buyers() {
        let odd = Selector::parse("odd").unwrap();
        assert!(odd.has(1) && !odd.has(2));
        let even = Selector::parse("Even").unwrap();
        assert!(even.has(2) && !even.has(3));
        let r = Selector::parse("3-5").unwrap();
        assert!(!r.has(2) && r.has(3) && r.has(5) && !r.has(6));
        assert_eq!(Selector::parse("7").unwrap(), Selector::Range(7, 7));
        assert!(Selector::parse("5-3").is_err());
        assert!(Selector::parse("first").is_err());
    }

    #[test]
    fn extractions_find_their_value_or_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-token", HeaderValue::from_static("h-1"));
        headers.append("set-cookie", HeaderValue::from_static("sid=c-1; Path=/"));
        let answer = Answer {
            status: 200,
            headers,
            body: br#"{"token": "t-1", "user": {"id": 42}, "none": null} id=77"#.to_vec(),
        };
        let url = Url::parse("http://h.test/login").unwrap();
        let jar = Jar::default();
        let take = |e: &str| Extract::parse(e).unwrap().take(&answer, &url, &jar);
        assert_eq!(
            take("json .user.id").as_deref(),
            None,
            "not JSON as a whole"
        );
        let json = Answer {
            body: br#"{"token": "t-1", "user": {"id": 42}, "none": null}"#.to_vec(),
            ..answer.clone()
        };
        let jtake = |e: &str| Extract::parse(e).unwrap().take(&json, &url, &jar);
        assert_eq!(jtake("json .token").as_deref(), Some("t-1"));
        assert_eq!(jtake("json user.id").as_deref(), Some("42"));
        assert_eq!(jtake("json .none"), None);
        assert_eq!(jtake("json .missing"), None);
        assert_eq!(take("header X-Token").as_deref(), Some("h-1"));
        assert_eq!(take("cookie sid").as_deref(), Some("c-1"));
        assert_eq!(take("regex 'id=(\\d+)'").as_deref(), Some("77"));
        assert_eq!(take("regex 'nothing-(\\d+)'"), None);
        let e = Extract::parse("jsn .token").unwrap_err();
        assert!(e.contains("did you mean `json`?"), "{e}");
        assert!(Extract::parse("regex '('").is_err());
        assert!(Extract::parse("header").is_err());
    }
}
