//! A real headless Chromium, driven over WebDriver (ChromeDriver) with
//! `fantoccini`: for the dashboard's browser tests. A test that fails
//! leaves a screenshot and the page's HTML in `target/browser-failures/`.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use futures::FutureExt;

pub use fantoccini::Locator;

/// ChromeDriver and one browser session on it; both end when dropped.
pub struct Chrome {
    driver: Child,
    pub client: Client,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Chrome {
    /// Starts ChromeDriver (Debian's `chromium-driver`, which
    /// `deploy/test.sh` installs) and a headless browser.
    pub async fn start() -> Chrome {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (deploy/test.sh installs chromium-driver)");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,900",
            ]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connected = ClientBuilder::rustls()
                .expect("a TLS config")
                .capabilities(caps.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no browser session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Chrome { driver, client }
    }

    /// Runs `test` with the browser; if it panics, the page as it was is
    /// saved as `target/browser-failures/NAME.png` and `.html` first.
    pub async fn run<F, Fut>(&self, name: &str, test: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = ()>,
    {
        let outcome = std::panic::AssertUnwindSafe(test(self.client.clone()))
            .catch_unwind()
            .await;
        if let Err(panic) = outcome {
            let dir = failures_dir();
            let _ = std::fs::create_dir_all(&dir);
            if let Ok(png) = self.client.screenshot().await {
                let _ = std::fs::write(dir.join(format!("{name}.png")), png);
            }
            if let Ok(html) = self.client.source().await {
                let _ = std::fs::write(dir.join(format!("{name}.html")), html);
            }
            eprintln!(
                "the page is saved in {}/{name}.png and .html",
                dir.display()
            );
            std::panic::resume_unwind(panic);
        }
    }
}

/// Waits (up to `timeout`) until the page's text holds `text`, reloading
/// it every half second; the page's text.
pub async fn wait_for_text(client: &Client, text: &str, timeout: Duration) -> String {
    wait_until_text(client, text, timeout, true).await
}

/// Waits (up to `timeout`) until the page, as it is, says `text`: what its
/// own script adds counts; it is never reloaded.
pub async fn wait_for_live_text(client: &Client, text: &str, timeout: Duration) -> String {
    wait_until_text(client, text, timeout, false).await
}

async fn wait_until_text(client: &Client, text: &str, timeout: Duration, reload: bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        // A page between loads (its script may reload it) has no body
        // for a moment: read again.
        let body = text_of(client, Locator::Css("body")).await;
        if body.contains(text) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the page never said {text:?}; it says:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(if reload { 500 } else { 100 })).await;
        if reload {
            client.refresh().await.expect("reload");
        }
    }
}

/// The text of the element `locator` finds, or "" while there is none (a
/// page being reloaded by its script has none for a moment).
pub async fn text_of(client: &Client, locator: Locator<'_>) -> String {
    match client.find(locator).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits (up to `timeout`) until the element `#status` says `want`,
/// reloading the page between looks if `reload`.
pub async fn wait_for_status(client: &Client, want: &str, timeout: Duration, reload: bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = text_of(client, Locator::Id("status")).await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {status:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if reload {
            client.refresh().await.expect("reload");
        }
    }
}

/// Where a failed test's screenshot and HTML go.
pub fn failures_dir() -> PathBuf {
    crate::repo_root().join("target/browser-failures")
}
