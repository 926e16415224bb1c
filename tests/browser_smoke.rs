//! The browser harness itself (`isx_system_tests::browser`): a real headless
//! Chromium fills and submits a form on a tiny page served from 127.0.0.1:0,
//! a failing check leaves its screenshot, and no browser process outlives the
//! test. Without Chromium on the machine the browser tests print a `skipped:`
//! line and pass, unless ISX_REQUIRE_BROWSER=1.

use std::path::Path;
use std::time::Duration;

use isx_system_tests::browser::{Browser, BrowserError, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><title>Smoke form</title></head>
<body>
<h1>Greeter</h1>
<form id="greet" method="post" action="/greet">
  <label>Name <input id="name" name="name" value="placeholder"></label>
  <label>Unit <select id="unit" name="unit"><option value="north">North</option><option value="south">South</option></select></label>
  <button type="submit">Greet</button>
</form>
</body></html>"#;

/// Serves the form on `GET /` and its answer on `POST /greet`, one request
/// per connection, until the test's runtime ends. Returns the base URL.
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
    });
    format!("http://{addr}")
}

async fn answer(mut stream: TcpStream) {
    let Some((head, body)) = read_request(&mut stream).await else {
        return;
    };
    let (status, page) = match head.split_whitespace().take(2).collect::<Vec<_>>()[..] {
        ["GET", "/"] => ("200 OK", FORM_PAGE.to_owned()),
        ["POST", "/greet"] => {
            let name = form_field(&body, "name").unwrap_or_default();
            let unit = form_field(&body, "unit").unwrap_or_default();
            let page = format!(
                "<!doctype html><html><head><title>Greeted</title></head>\
                 <body><p id=\"result\">Hello, {}!</p><p id=\"unit\">{}</p></body></html>",
                escape(&name),
                escape(&unit)
            );
            ("200 OK", page)
        }
        _ => ("404 Not Found", "<p>not here</p>".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request head and its body (by Content-Length), at most 64 KiB.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if data.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(64 * 1024);
    while data.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned();
    Some((head, body))
}

/// The field `name` of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| decode(value))
    })
}

fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = value.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The processes whose command line names `needle` (each process of a browser
/// session names its scratch directory).
fn processes_naming(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then(|| format!("{}: {cmdline}", entry.file_name().to_string_lossy()))
        })
        .collect()
}

fn is_running(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would say "State: Z".
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|line| line.starts_with("State:") && line.contains('Z')))
}

#[tokio::test]
async fn fills_and_submits_a_form() -> Result<(), BrowserError> {
    let url = serve().await;
    let Some(browser) = Browser::start("fills_and_submits_a_form").await? else {
        return Ok(());
    };
    browser.goto(&url).await?;
    assert_eq!(browser.title().await?, "Smoke form");
    assert_eq!(browser.text("h1").await?, "Greeter");
    assert_eq!(browser.texts("label").await?, ["Name", "Unit\nNorth\nSouth"]);
    assert_eq!(browser.count("#result").await?, 0);
    assert_eq!(browser.value("#name").await?, "placeholder");
    assert_eq!(browser.attr("#name", "name").await?.as_deref(), Some("name"));

    browser.fill("#name", "Ada <Lovelace> & 100%").await?;
    assert_eq!(browser.value("#name").await?, "Ada <Lovelace> & 100%");
    browser.select("#unit", "south").await?;
    browser.submit("#greet").await?;
    let greeting = browser.wait_for_text("#result", "Hello").await?;
    assert_eq!(greeting, "Hello, Ada <Lovelace> & 100%!");
    assert_eq!(browser.text("#unit").await?, "south");
    assert!(browser.current_url().await?.ends_with("/greet"));

    // Once more with a click on the button, the form's page gone for good.
    browser.goto(&url).await?;
    browser.wait_for("#name").await?;
    browser.fill("#name", "Grace").await?;
    browser.click("button[type=submit]").await?;
    browser.wait_gone("#greet").await?;
    assert_eq!(browser.wait_for_text("#result", "Grace").await?, "Hello, Grace!");
    assert_eq!(browser.text("#unit").await?, "north");

    let size = browser.execute("return [window.innerWidth, window.innerHeight];", vec![]).await?;
    assert_eq!(size, serde_json::json!([1280, 900]), "the page area is 1280x900");

    let scratch = browser.scratch_dir().to_owned();
    let driver = browser.driver_pid();
    assert!(!processes_naming(&scratch).is_empty(), "Chromium runs with the scratch directory {}", scratch.display());
    browser.close().await?;
    assert!(!is_running(driver), "chromedriver {driver} is still running after close");
    assert_eq!(processes_naming(&scratch), Vec::<String>::new(), "Chromium outlived close");
    assert!(!scratch.exists(), "the scratch directory {} is left behind", scratch.display());
    Ok(())
}

#[tokio::test]
async fn a_failing_check_saves_a_screenshot() -> Result<(), BrowserError> {
    let url = serve().await;
    let test = "a_failing_check_saves_a_screenshot";
    let Some(mut browser) = Browser::start(test).await? else {
        return Ok(());
    };
    let shot = browser.failure_screenshot_path().to_owned();
    assert!(
        shot.ends_with(format!("target/browser-screenshots/{test}.png"))
            || shot.ends_with(format!("browser-screenshots/{test}.png"))
    );
    assert!(!shot.exists(), "start removes an earlier run's screenshot");
    browser.goto(&url).await?;

    // A helper that gives up saves the screenshot and names it in its error.
    browser.set_wait_timeout(Duration::from_millis(300));
    let error = browser.wait_for_text("h1", "Never there").await.expect_err("the page has no such text");
    let message = format!("{error:?}");
    assert!(message.contains("\"Never there\" in the text of `h1`"), "{message}");
    assert!(message.contains("last seen: \"Greeter\""), "{message}");
    assert!(message.contains(&shot.display().to_string()), "{message}");
    assert_png(&shot);
    std::fs::remove_file(&shot).expect("remove the screenshot");

    // A panic (a failed assert!) while the browser is alive saves it in the drop,
    // and the drop still ends every browser process.
    let scratch = browser.scratch_dir().to_owned();
    let driver = browser.driver_pid();
    let panicked = tokio::spawn(async move {
        let _browser = browser;
        panic!("deliberate failure: the drop must save the screenshot");
    })
    .await
    .expect_err("the task panics");
    assert!(panicked.is_panic());
    assert_png(&shot);
    assert!(!is_running(driver), "chromedriver {driver} outlived the drop");
    assert_eq!(processes_naming(&scratch), Vec::<String>::new(), "Chromium outlived the drop");
    std::fs::remove_file(&shot).expect("remove the screenshot");
    Ok(())
}

fn assert_png(path: &Path) {
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    // The IHDR chunk: width and height, big-endian, at bytes 16..24.
    let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
    assert_eq!((width, height), (1280, 900), "the screenshot's size");
}

/// A missing browser is a skip (no session, Ok(None)), and a failure naming the
/// fix when it is required. No browser needed: this runs everywhere.
#[tokio::test]
async fn a_missing_browser_skips_or_fails_when_required() {
    let missing = Options { chromium: Some("/nonexistent/chromium".into()), chromedriver: None, require: false };
    let skipped =
        Browser::start_with("a_missing_browser_skips_or_fails_when_required (a deliberate skip)", &missing).await;
    assert!(matches!(skipped, Ok(None)), "{skipped:?}");

    let required = Options { require: true, ..missing };
    let error = Browser::start_with("a_missing_browser_fails", &required).await.expect_err("required");
    let message = error.to_string();
    assert!(message.starts_with("Chromium not found (looked at /nonexistent/chromium)"), "{message}");
    assert!(message.contains("install chromium chromium-driver"), "{message}");
    assert!(message.contains("ISX_CHROMIUM"), "{message}");

    let no_driver = Options {
        chromium: Some("/bin/sh".into()),
        chromedriver: Some("/nonexistent/chromedriver".into()),
        require: true,
    };
    let error = Browser::start_with("a_missing_driver_fails", &no_driver).await.expect_err("required");
    assert!(error.to_string().starts_with("chromedriver not found (looked at /nonexistent/chromedriver)"), "{error}");
}

/// `kill` ends the browser without closing its session (as a crash would):
/// chromedriver, each Chromium process and Chromium's crash handlers (outside
/// the process group) are gone when it returns.
#[tokio::test]
async fn a_killed_browser_leaves_no_process() -> Result<(), BrowserError> {
    let url = serve().await;
    let Some(browser) = Browser::start("a_killed_browser_leaves_no_process").await? else {
        return Ok(());
    };
    browser.goto(&url).await?;
    let scratch = browser.scratch_dir().to_owned();
    let driver = browser.driver_pid();
    let running = processes_naming(&scratch);
    assert!(running.iter().any(|p| p.contains("chrome_crashpad_handler")), "{running:#?}");
    browser.kill();
    assert!(!is_running(driver), "chromedriver {driver} outlived kill");
    assert_eq!(processes_naming(&scratch), Vec::<String>::new(), "processes outlived kill");
    assert!(!scratch.exists(), "the scratch directory {} is left behind", scratch.display());
    Ok(())
}
