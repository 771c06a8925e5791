//! The HTTP face of the room (axum): the pages and their assets, `/events`
//! (server-sent events), `/api/state`, the teacher's actions (behind the
//! token, as `?token=` or `Authorization: Bearer`) and the students'
//! (behind the cookie `/join` sets). Every refusal is JSON, one line:
//! `{"error": "..."}` with the status that says what kind.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::assets;
use super::replaying;
use super::room::{Refusal, Room, RoundRequest, Why};

/// The cookie that tells students apart.
pub const COOKIE: &str = "racelab_student";

type Shared = Arc<Room>;

pub fn router(room: Shared) -> Router {
    Router::new()
        .route("/", get(projector))
        .route("/join", get(join))
        .route("/assets/{file}", get(asset))
        .route("/qr.svg", get(qr))
        .route("/events", get(events))
        .route("/api/state", get(state))
        .route("/api/round", post(start_round))
        .route("/api/round/close", post(close_round))
        .route("/api/bots", post(add_bots).delete(remove_bots))
        .route("/api/replay", post(replay))
        .route("/api/replay/step", post(replay_step))
        .route("/api/replay/stop", post(replay_stop))
        .route("/api/join", post(name))
        .route("/api/buy", post(buy))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(room)
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, json_body(&json!({"error": self.message}))).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

fn json_body(v: &Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

fn ok(v: Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json_body(&v),
    )
        .into_response()
}

fn reply(r: Result<Value, Refusal>) -> Response {
    match r {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

/// Parse a JSON body (an empty body is `{}`) into `T`, or refuse it in
/// one line.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Refusal> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(text).map_err(|e| Refusal::new(400, format!("bad JSON body: {e}")))
}

/// The teacher's token from `Authorization: Bearer` or `?token=`.
fn teacher(room: &Room, headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let given = bearer.map(str::to_string).or(query);
    match given {
        Some(t) if room.token.matches(&t) => Ok(()),
        Some(_) => Err(Refusal::new(403, "wrong teacher token")),
        None => Err(Refusal::new(
            403,
            "only the teacher can do this: send the token racelab printed (?token= or Authorization: Bearer)",
        )),
    }
}

/// The student's id from the cookie, if any.
fn student(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, assets::CSP),
        ],
        html,
    )
        .into_response()
}

async fn projector() -> Response {
    page(assets::PROJECTOR_HTML)
}

/// The student page; sets the student's cookie if they have none the room
/// knows.
async fn join(State(room): State<Shared>, headers: HeaderMap) -> Response {
    let mut r = page(assets::JOIN_HTML);
    if !student(&headers).is_some_and(|id| room.knows(&id)) {
        let id = room.new_student();
        let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match assets::file(&file) {
        Some((kind, body)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => Refusal::new(404, format!("no asset {file:?}")).into_response(),
    }
}

async fn qr(State(room): State<Shared>) -> Response {
    match assets::qr_svg(&room.settings.join_url) {
        Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(e) => Refusal::new(500, e).into_response(),
    }
}

async fn not_found() -> Response {
    Refusal::new(
        404,
        "no such page: the projector is /, students go to /join",
    )
    .into_response()
}

async fn state(State(room): State<Shared>, headers: HeaderMap) -> Response {
    ok(room.snapshot(student(&headers).as_deref()))
}

/// Server-sent events: first the whole state, then every change, until
/// racelab stops.
async fn events(State(room): State<Shared>) -> Response {
    let rx = room.subscribe();
    let first = room.snapshot(None);
    let stopped = room.control.clone();
    let room2 = room.clone();
    let stream = futures_util::stream::unfold(
        (Some(first), rx, stopped, room2),
        |(first, mut rx, stopped, room)| async move {
            if let Some(f) = first {
                let ev = SseEvent::default().event("state").data(f.to_string());
                return Some((Ok::<_, Infallible>(ev), (None, rx, stopped, room)));
            }
            let next = tokio::select! {
                biased;
                _ = stopped.stopped() => return None,
                e = rx.recv() => e,
            };
            let ev = match next {
                Ok(e) => SseEvent::default().event(e.name).data(&*e.data),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => SseEvent::default()
                    .event("state")
                    .data(room.snapshot(None).to_string()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(ev), (None, rx, stopped, room)))
        },
    );
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn start_round(
    State(room): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let run = async {
        teacher(&room, &headers, &uri)?;
        let ask: RoundRequest = body(&bytes)?;
        room.start_round(ask).await
    };
    reply(run.await)
}

async fn close_round(State(room): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let run = async {
        teacher(&room, &headers, &uri)?;
        room.close_round(Why::Teacher).await
    };
    reply(run.await)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Bots {
    n: u32,
}

async fn add_bots(
    State(room): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let run = || {
        teacher(&room, &headers, &uri)?;
        let ask: Bots = body(&bytes)?;
        room.add_bots(ask.n)
    };
    reply(run())
}

async fn remove_bots(State(room): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    reply(teacher(&room, &headers, &uri).map(|()| room.remove_bots()))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default = "naive")]
    strategy: String,
}

fn naive() -> String {
    "naive".into()
}

async fn replay(
    State(room): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let run = async {
        teacher(&room, &headers, &uri)?;
        let ask: ReplayRequest = body(&bytes)?;
        let strategy = room.strategy(&ask.strategy)?;
        replaying::start(&room, strategy).await
    };
    reply(run.await)
}

async fn replay_step(State(room): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let run = async {
        teacher(&room, &headers, &uri)?;
        replaying::step(&room).await
    };
    reply(run.await)
}

async fn replay_stop(State(room): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let run = async {
        teacher(&room, &headers, &uri)?;
        replaying::stop(&room).await
    };
    reply(run.await)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Name {
    name: String,
}

async fn name(State(room): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    let run = || {
        let id = student(&headers).ok_or_else(no_cookie)?;
        let ask: Name = body(&bytes)?;
        room.name_student(&id, &ask.name)
    };
    reply(run())
}

async fn buy(State(room): State<Shared>, headers: HeaderMap) -> Response {
    let run = async {
        let id = student(&headers).ok_or_else(no_cookie)?;
        room.buy(&id).await
    };
    reply(run.await)
}

fn no_cookie() -> Refusal {
    Refusal::new(
        403,
        "no student cookie: open the join page (GET /join) first, it sets one",
    )
}
