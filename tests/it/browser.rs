//! A real browser for the tests: headless Chromium driven through
//! chromedriver's WebDriver API (a small client over reqwest), the
//! screenshot check, and stopping a child process by its pid.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use serde_json::{json, Value};

/// Wait at most this long for any state a test needs.
const DEADLINE: Duration = Duration::from_secs(60);

/// SIGTERM, then wait (at most a minute) for a clean exit; SIGKILL after.
pub fn stop_child(child: &mut Child) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    // SAFETY: a signal to our own child, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            ensure!(status.success(), "exited with {status}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("did not stop within {DEADLINE:?} of SIGTERM")
}

/// Chromium and chromedriver, when both are installed.
pub struct Browser {
    pub chromium: PathBuf,
    pub driver: PathBuf,
}

impl Browser {
    pub fn find() -> Option<Browser> {
        let which = |names: &[&str]| {
            names.iter().find_map(|n| {
                std::env::var_os("PATH").and_then(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(n))
                        .find(|f| f.is_file())
                })
            })
        };
        Some(Browser {
            chromium: which(&["chromium", "chromium-browser", "google-chrome"])?,
            driver: which(&["chromedriver"])?,
        })
    }
}

/// chromedriver and one browser session, stopped (by pid) when dropped.
pub struct Driver {
    child: Child,
    http: reqwest::Client,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    pub async fn start(b: &Browser) -> anyhow::Result<Driver> {
        let mut child = Command::new(&b.driver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let _ = tx.send(rest.trim_end_matches('.').to_string());
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(20));
        let profile = tempfile::tempdir()?;
        let mut d = Driver {
            child,
            http: reqwest::Client::builder().no_proxy().build()?,
            url: String::new(),
            _profile: profile,
        };
        let port = port.map_err(|_| anyhow!("chromedriver did not say its port"))?;
        let root = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": b.chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                    "--disable-backgrounding-occluded-windows", "--disable-dev-shm-usage",
                    // Thirty tabs of one small page need not be thirty processes.
                    "--disable-site-isolation-trials", "--renderer-process-limit=4",
                    format!("--user-data-dir={}", d._profile.path().display()),
                ],
            },
        }}});
        let r: Value = d
            .http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let id = r["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no WebDriver session: {r}"))?;
        d.url = format!("{root}/session/{id}");
        d.cmd(
            reqwest::Method::POST,
            "/timeouts",
            json!({"script": 90_000}),
        )
        .await?;
        Ok(d)
    }

    pub async fn cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut rq = self.http.request(method, format!("{}{path}", self.url));
        if !body.is_null() {
            rq = rq.json(&body);
        }
        let r: Value = rq.send().await?.json().await?;
        if let Some(e) = r["value"]["error"].as_str() {
            bail!("WebDriver {path}: {e}: {}", r["value"]["message"]);
        }
        Ok(r["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd(reqwest::Method::POST, "/url", json!({"url": url}))
            .await
            .map(|_| ())
    }

    pub async fn new_tab(&self) -> anyhow::Result<String> {
        let v = self
            .cmd(reqwest::Method::POST, "/window/new", json!({"type": "tab"}))
            .await?;
        Ok(v["handle"].as_str().context("handle")?.to_string())
    }

    pub async fn switch(&self, handle: &str) -> anyhow::Result<()> {
        self.cmd(reqwest::Method::POST, "/window", json!({"handle": handle}))
            .await
            .map(|_| ())
    }

    pub async fn find(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("no element {css}"))
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let el = self.find(css).await?;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            json!({}),
        )
        .await
        .map(|_| ())
    }

    pub async fn js(&self, script: &str) -> anyhow::Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Run `body` in the current tab once `ready` (an expression) holds,
    /// checking every 25 ms for at most a minute: one command, however
    /// long the page takes.
    pub async fn when(&self, what: &str, ready: &str, body: &str) -> anyhow::Result<()> {
        let script = format!(
            "const done = arguments[arguments.length - 1]; const t0 = Date.now();\n\
             (function poll() {{\n\
               let ok = false; try {{ ok = {ready}; }} catch (e) {{}}\n\
               if (ok) {{ {body}; done(true); }}\n\
               else if (Date.now() - t0 > 60000) done(document.body.innerText);\n\
               else setTimeout(poll, 25);\n\
             }})();"
        );
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/execute/async",
                json!({"script": script, "args": []}),
            )
            .await?;
        ensure!(
            v == json!(true),
            "waited a minute for {what}; the page says: {v}"
        );
        Ok(())
    }

    /// Evaluate `script` in the current tab until it returns true.
    pub async fn wait(&self, what: &str, script: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.js(script).await? == json!(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText").await?;
                bail!("waited {DEADLINE:?} for {what}; the page says: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn window_size(&self, w: u32, h: u32) -> anyhow::Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": w, "height": h}),
        )
        .await
        .map(|_| ())
    }

    pub async fn screenshot(&self, to: &Path) -> anyhow::Result<()> {
        use base64::Engine as _;
        let v = self
            .cmd(reqwest::Method::GET, "/screenshot", Value::Null)
            .await?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().context("png")?)?;
        std::fs::write(to, png)?;
        Ok(())
    }

    pub async fn quit(mut self) -> anyhow::Result<()> {
        let _ = self.cmd(reqwest::Method::DELETE, "", Value::Null).await;
        stop_child(&mut self.child).or_else(|_| Ok(()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A screenshot is not blank: it decodes, and it holds many colours.
pub fn check_png(path: &Path) -> anyhow::Result<()> {
    let decoder = png::Decoder::new(std::fs::File::open(path)?);
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let px = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    for p in buf[..info.buffer_size()].chunks(px) {
        colours.insert(p.to_vec());
    }
    ensure!(
        info.width > 300 && info.height > 300 && colours.len() > 50,
        "{}: {}x{}, {} colours",
        path.display(),
        info.width,
        info.height,
        colours.len()
    );
    Ok(())
}
