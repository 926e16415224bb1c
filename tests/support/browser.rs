//! Headless Chromium driven over WebDriver, for whole-system tests of the web
//! console.
//!
//! # Layout
//!
//! - [`Browser::start`] finds `chromium` and `chromedriver`, starts chromedriver
//!   on a port it picks itself (`--port=0`, read back from its first lines),
//!   asks its `/status` until ready, and opens a headless Chromium session with
//!   a fresh scratch directory (profile, crash database, log) and a 1280x900
//!   page area. Without a browser on the machine it prints one `skipped: ...`
//!   line and returns `Ok(None)`, unless `ISX_REQUIRE_BROWSER=1` (CI): then it
//!   fails.
//! - The page helpers take CSS selectors: [`Browser::goto`], [`Browser::text`],
//!   [`Browser::click`], [`Browser::fill`], [`Browser::submit`],
//!   [`Browser::wait_for`], [`Browser::wait_for_text`], ... Every WebDriver
//!   command is bounded; the waits poll until [`Browser::set_wait_timeout`].
//! - Failure screenshots: a helper that fails saves the page to
//!   `target/browser-screenshots/<test>.png` before it returns its error (the
//!   error names the file), and a `Browser` dropped during a panic (a failed
//!   `assert!`) saves it too. Start removes an older one. For a check that is
//!   meant to find nothing, use [`Browser::count`] (no error, no picture).
//!   [`Browser::save_screenshot_to`] is for pictures that the docs keep.
//! - Closing: [`Browser::close`] (or the drop) ends the WebDriver session, then
//!   kills chromedriver's process group (chromedriver and every Chromium
//!   process) and Chromium's crash handlers (outside the group), and removes the
//!   scratch directory. [`Browser::kill`] skips the session's end.
//!
//! The WebDriver client ([`fantoccini`]) runs on a runtime of its own, on its own
//! thread, so that the drop can still take a screenshot and close the session
//! while the test's runtime is unwinding from a panic.
//!
//! ```no_run
//! # async fn example(url: &str) -> Result<(), isx_system_tests::browser::BrowserError> {
//! use isx_system_tests::browser::Browser;
//! let Some(browser) = Browser::start("console_login").await? else {
//!     return Ok(()); // skipped: no Chromium on this machine
//! };
//! browser.goto(url).await?;
//! browser.fill("#officer", "o-17").await?;
//! browser.submit("form#login").await?;
//! browser.wait_for_text("h1", "Alerts").await?;
//! browser.close().await
//! # }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use fantoccini::error::{CmdError, NewSessionError};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

pub use fantoccini::elements::Element;

/// The environment variable naming the Chromium binary (default: `chromium` on
/// `PATH`, then `/usr/bin/chromium`).
pub const CHROMIUM_ENV: &str = "ISX_CHROMIUM";
/// The environment variable naming the chromedriver binary (default:
/// `chromedriver` on `PATH`, then `/usr/bin/chromedriver`).
pub const CHROMEDRIVER_ENV: &str = "ISX_CHROMEDRIVER";
/// The environment variable that turns a missing browser from a skip into a
/// failure when it is `1` (CI sets it).
pub const REQUIRE_ENV: &str = "ISX_REQUIRE_BROWSER";

/// How long the `wait_for*` helpers wait unless [`Browser::set_wait_timeout`]
/// says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The pause between two looks of a `wait_for*` helper.
const POLL: Duration = Duration::from_millis(100);
/// The bound on one WebDriver command (the page-load timeout is the same).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on chromedriver printing the port it listens on.
const DRIVER_PORT_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times `/status` is asked before chromedriver counts as not ready.
const STATUS_ATTEMPTS: u32 = 100;
/// The bound on all the `/status` attempts together.
const STATUS_DEADLINE: Duration = Duration::from_secs(10);
/// The bound on one `/status` attempt.
const STATUS_TRY_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause between two `/status` attempts.
const STATUS_INTERVAL: Duration = Duration::from_millis(50);
/// The bound on opening the Chromium session (Chromium's start-up).
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times the teardown looks for processes left (see `Driver::kill`).
const SWEEP_ATTEMPTS: u32 = 50;
/// The pause between two such looks.
const SWEEP_INTERVAL: Duration = Duration::from_millis(20);
/// The bound on each step of the drop (screenshot, closing the session).
const DROP_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The page area (viewport) each session starts with, in CSS pixels: the size
/// of the screenshots.
pub const VIEWPORT: (u32, u32) = (1280, 900);
/// The window Chromium opens with; [`Browser::set_viewport`] then grows it by
/// the window's frame, so that the page itself gets [`VIEWPORT`].
const WINDOW_SIZE: &str = "--window-size=1280,900";

/// Where to find the browser, and whether its absence fails the test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The Chromium binary; `None` looks for `chromium` (or
    /// `chromium-browser`) on `PATH`, then `/usr/bin/chromium`.
    pub chromium: Option<PathBuf>,
    /// The chromedriver binary; `None` looks for `chromedriver` on `PATH`,
    /// then `/usr/bin/chromedriver`.
    pub chromedriver: Option<PathBuf>,
    /// A missing browser is an error ([`BrowserError::NotInstalled`]) instead
    /// of a skip.
    pub require: bool,
}

impl Options {
    /// Reads `ISX_CHROMIUM`, `ISX_CHROMEDRIVER` and `ISX_REQUIRE_BROWSER=1`.
    /// An empty path variable counts as unset.
    pub fn from_env() -> Self {
        let path = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
        Self {
            chromium: path(CHROMIUM_ENV),
            chromedriver: path(CHROMEDRIVER_ENV),
            require: std::env::var_os(REQUIRE_ENV).is_some_and(|value| value == "1"),
        }
    }
}

/// What went wrong while starting or driving the browser. Its `Debug` form (the
/// one a failing test prints) is the message and its causes, one per line.
#[derive(thiserror::Error)]
pub enum BrowserError {
    /// Chromium or chromedriver is not on this machine and `ISX_REQUIRE_BROWSER=1`.
    #[error(
        "{what} not found (looked at {looked}): install chromium chromium-driver, or set {env} \
         to the binary; {REQUIRE_ENV}=1 makes a missing browser a failure instead of a skip"
    )]
    NotInstalled {
        /// `Chromium` or `chromedriver`.
        what: &'static str,
        /// The variable that names the binary.
        env: &'static str,
        /// The places looked at.
        looked: String,
    },
    /// A process, thread, file or directory could not be started or written.
    #[error("could not {action}")]
    Io {
        /// What was being done, with the path.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// chromedriver did not come up (no port, no ready `/status`).
    #[error("chromedriver at {driver} did not start: {reason}{log_tail}")]
    Driver {
        /// The chromedriver binary.
        driver: PathBuf,
        /// What was seen instead.
        reason: String,
        /// The end of chromedriver's log, as lines that follow the message
        /// (the log itself is removed with the scratch directory).
        log_tail: String,
    },
    /// chromedriver could not start a Chromium session.
    #[error(
        "chromedriver could not start Chromium at {chromium} (it must be a Chromium of \
         chromedriver's version){log_tail}"
    )]
    Session {
        /// The Chromium binary.
        chromium: PathBuf,
        /// The end of chromedriver's log, as for [`BrowserError::Driver`].
        log_tail: String,
        /// The cause (boxed: fantoccini's error is large).
        #[source]
        source: Box<SessionCause>,
    },
    /// A WebDriver command failed.
    #[error("{action} failed{}", screenshot_note(.screenshot))]
    Command {
        /// The command, with its selector or URL.
        action: String,
        /// The failure screenshot, when one could be saved.
        screenshot: Option<PathBuf>,
        /// The cause (boxed: fantoccini's error is large).
        #[source]
        source: Box<CmdError>,
    },
    /// A WebDriver command did not answer within its bound.
    #[error("{action} did not answer within {} s{}", COMMAND_TIMEOUT.as_secs(), screenshot_note(.screenshot))]
    CommandTimeout {
        /// The command, with its selector or URL.
        action: String,
        /// The failure screenshot, when one could be saved.
        screenshot: Option<PathBuf>,
    },
    /// A `wait_for*` helper gave up.
    #[error("waited {} ms for {what}; last seen: {last}{}", .waited.as_millis(), screenshot_note(.screenshot))]
    WaitTimeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// What the page showed on the last look.
        last: String,
        /// The failure screenshot, when one could be saved.
        screenshot: Option<PathBuf>,
    },
}

/// Why the Chromium session did not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionCause {
    /// chromedriver refused or failed.
    #[error(transparent)]
    Refused(#[from] NewSessionError),
    /// No answer within the bound.
    #[error("no answer within {} s", SESSION_TIMEOUT.as_secs())]
    Timeout,
    /// The WebDriver runtime stopped.
    #[error("the WebDriver runtime stopped")]
    RuntimeGone,
}

fn screenshot_note(screenshot: &Option<PathBuf>) -> String {
    match screenshot {
        Some(path) => format!(" (screenshot: {})", path.display()),
        None => String::new(),
    }
}

impl fmt::Debug for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut shown = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            let line = error.to_string();
            // fantoccini's errors print their inner error as well: skip repeats.
            if !shown.contains(&line) {
                write!(f, "\n  caused by: {line}")?;
                shown = line;
            }
            cause = error.source();
        }
        Ok(())
    }
}

fn io_error(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrowserError {
    let action = action.into();
    move |source| BrowserError::Io { action, source }
}

/// Where failure screenshots go: `target/browser-screenshots` (the target
/// directory is `CARGO_TARGET_DIR` when set, else the workspace's `target/`).
pub fn screenshot_dir() -> PathBuf {
    let workspace =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")));
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("browser-screenshots")
}

/// A test name as a file name: letters, digits, `-` and `_` stay, the rest
/// becomes `_`.
fn file_stem(test: &str) -> String {
    let stem: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if stem.is_empty() { "browser".to_owned() } else { stem }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Finds a binary: the explicit path only, when given; else the names on
/// `path_var` (the value of `PATH`), then `fallback`. Returns where it looked
/// when nothing fits.
fn locate(
    explicit: Option<&Path>,
    names: &[&str],
    path_var: Option<&OsString>,
    fallback: &str,
) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if is_executable(path) { Ok(path.to_owned()) } else { Err(path.display().to_string()) };
    }
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            for name in names {
                let candidate = dir.join(name);
                if is_executable(&candidate) {
                    return Ok(candidate);
                }
            }
        }
    }
    let fallback = PathBuf::from(fallback);
    if is_executable(&fallback) {
        return Ok(fallback);
    }
    Err(format!("{} on PATH, {}", names.join(", "), fallback.display()))
}

/// The runtime that the WebDriver client lives on, on a thread of its own.
struct DriverRuntime {
    /// Spawns onto the runtime.
    handle: tokio::runtime::Handle,
    /// Ends the thread's `block_on` (dropping it does too).
    stop: Option<oneshot::Sender<()>>,
    /// The thread; joined on shutdown.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DriverRuntime {
    fn start(test: &str) -> Result<Self, BrowserError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error("build the WebDriver client's tokio runtime"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("webdriver-{test}"))
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(io_error("start the WebDriver client's thread"))?;
        Ok(Self { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Runs `future` on the runtime and blocks this thread (at most `bound`)
    /// for its output. For the drop, where nothing can be awaited.
    fn block_on<T: Send + 'static>(
        &self,
        bound: Duration,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.handle.spawn(async move {
            if let Ok(output) = tokio::time::timeout(bound, future).await {
                let _ = tx.send(output);
            }
        });
        rx.recv_timeout(bound + Duration::from_secs(1)).ok()
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DriverRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// chromedriver, in a process group of its own that Chromium inherits.
struct Driver {
    /// The chromedriver process.
    child: Child,
    /// Set once the child is reaped: its pid (the group id) may then be reused.
    reaped: bool,
    /// The session's temporary directory, on the command line of each of its
    /// processes.
    scratch: PathBuf,
}

impl Driver {
    /// Kills the whole group (chromedriver and each Chromium process left),
    /// reaps chromedriver, then waits (at most [`SWEEP_ATTEMPTS`] looks) until
    /// no live process names the scratch directory, killing the crash handlers
    /// on the way. The group is killed before the reaping, while chromedriver's
    /// pid (the group id) cannot have been reused.
    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
        for _ in 0..SWEEP_ATTEMPTS {
            let left = processes_naming(&self.scratch);
            if left.is_empty() {
                return;
            }
            for (pid, crash_handler) in left {
                if crash_handler {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            std::thread::sleep(SWEEP_INTERVAL);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The live processes whose command line names `scratch`, and whether each is
/// one of Chromium's crash handlers. A killed process needs a moment to go, and
/// the crash handlers (`chrome_crashpad_handler`) run in sessions of their own,
/// outside the group: they name their database, which `XDG_CONFIG_HOME` puts
/// in `scratch`. A zombie has an empty command line, so it does not count.
fn processes_naming(scratch: &Path) -> Vec<(rustix::process::Pid, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let scratch = scratch.as_os_str().as_encoded_bytes();
    let database = [b"--database=".as_slice(), scratch].concat();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|byte| *byte == 0);
        if args.clone().any(|arg| arg.windows(scratch.len()).any(|window| window == scratch)) {
            found.push((pid, args.any(|arg| arg.starts_with(&database))));
        }
    }
    found
}

/// A headless Chromium session for one test. See the [module docs](self).
pub struct Browser {
    /// The test's name: the failure screenshot's file name.
    test: String,
    /// `target/browser-screenshots/<test>.png`.
    failure_screenshot: PathBuf,
    /// How long the `wait_for*` helpers wait.
    wait_timeout: Duration,
    /// The WebDriver session; `None` once closed.
    client: Option<Client>,
    /// Where the client's requests run.
    runtime: DriverRuntime,
    /// chromedriver and, through its process group, Chromium.
    driver: Driver,
    /// The scratch directory: Chromium's `--user-data-dir` and crash
    /// database, chromedriver's log; removed last.
    profile: tempfile::TempDir,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("test", &self.test)
            .field("driver_pid", &self.driver.child.id())
            .field("profile", &self.profile.path())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for the test `test` (its
    /// name names the failure screenshot), with the [`Options::from_env`].
    ///
    /// `Ok(None)` when Chromium or chromedriver is missing: one line
    /// `skipped: <test>: Chromium or chromedriver not found (install chromium
    /// chromium-driver)` then goes to stderr (not captured by the test
    /// harness). With `ISX_REQUIRE_BROWSER=1` that is an error instead.
    pub async fn start(test: &str) -> Result<Option<Self>, BrowserError> {
        Self::start_with(test, &Options::from_env()).await
    }

    /// [`Browser::start`] with explicit [`Options`] instead of the environment.
    pub async fn start_with(test: &str, options: &Options) -> Result<Option<Self>, BrowserError> {
        let path_var = std::env::var_os("PATH");
        let chromium = locate(
            options.chromium.as_deref(),
            &["chromium", "chromium-browser"],
            path_var.as_ref(),
            "/usr/bin/chromium",
        );
        let chromedriver =
            locate(options.chromedriver.as_deref(), &["chromedriver"], path_var.as_ref(), "/usr/bin/chromedriver");
        let (chromium, chromedriver) = match (chromium, chromedriver) {
            (Ok(chromium), Ok(chromedriver)) => (chromium, chromedriver),
            (chromium, chromedriver) => {
                if options.require {
                    return Err(match chromium {
                        Err(looked) => BrowserError::NotInstalled { what: "Chromium", env: CHROMIUM_ENV, looked },
                        Ok(_) => BrowserError::NotInstalled {
                            what: "chromedriver",
                            env: CHROMEDRIVER_ENV,
                            looked: chromedriver.err().unwrap_or_default(),
                        },
                    });
                }
                // Straight to stderr: libtest captures eprintln! of a passing test.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {test}: Chromium or chromedriver not found (install chromium chromium-driver)"
                );
                return Ok(None);
            }
        };

        let failure_screenshot = screenshot_dir().join(format!("{}.png", file_stem(test)));
        // A picture from an earlier failing run would read as this run's.
        let _ = std::fs::remove_file(&failure_screenshot);

        let profile = tempfile::Builder::new()
            .prefix("isx-browser-")
            .tempdir()
            .map_err(io_error("create a temporary Chromium profile directory"))?;
        let log = profile.path().join("chromedriver.log");
        let user_data = profile.path().join("chromium");

        let mut driver = Driver {
            child: Command::new(&chromedriver)
                .arg("--port=0")
                .arg(format!("--log-path={}", log.display()))
                // Chromium keeps its crash database under XDG_CONFIG_HOME, not
                // under --user-data-dir: this keeps it in the scratch directory.
                .env("XDG_CONFIG_HOME", profile.path().join("config"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(io_error(format!("start {}", chromedriver.display())))?,
            reaped: false,
            scratch: profile.path().to_owned(),
        };
        let driver_error =
            |reason: String| BrowserError::Driver { driver: chromedriver.clone(), reason, log_tail: log_tail(&log) };
        let stdout = driver.child.stdout.take().ok_or_else(|| driver_error("its stdout was not piped".to_owned()))?;
        let port = tokio::time::timeout(DRIVER_PORT_TIMEOUT, read_port(stdout))
            .await
            .map_err(|_| driver_error(format!("it printed no port within {} s", DRIVER_PORT_TIMEOUT.as_secs())))?
            .map_err(driver_error)?;
        wait_ready(port).await.map_err(driver_error)?;

        let runtime = DriverRuntime::start(&file_stem(test))?;
        let capabilities = capabilities(&chromium, &user_data);
        let url = format!("http://127.0.0.1:{port}");
        let session = runtime.handle.spawn(async move {
            ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&url).await
        });
        let session_error = |source: SessionCause| BrowserError::Session {
            chromium: chromium.clone(),
            log_tail: log_tail(&log),
            source: Box::new(source),
        };
        let client = match tokio::time::timeout(SESSION_TIMEOUT, session).await {
            Err(_) => Err(session_error(SessionCause::Timeout)),
            Ok(Err(_)) => Err(session_error(SessionCause::RuntimeGone)),
            Ok(Ok(Err(error))) => Err(session_error(SessionCause::Refused(error))),
            Ok(Ok(Ok(client))) => Ok(client),
        };
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                driver.kill();
                return Err(error);
            }
        };

        let browser = Self {
            test: test.to_owned(),
            failure_screenshot,
            wait_timeout: DEFAULT_WAIT,
            client: Some(client),
            runtime,
            driver,
            profile,
        };
        browser.set_viewport(VIEWPORT.0, VIEWPORT.1).await?;
        Ok(Some(browser))
    }

    /// Resizes the window so that the page area (`window.innerWidth` x
    /// `window.innerHeight`, and so a screenshot) is `width` x `height`.
    pub async fn set_viewport(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        let frame = self
            .execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];", vec![])
            .await?;
        let frame = |i: usize| frame.get(i).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        self.command(
            || format!("resizing the window for a {width}x{height} page"),
            self.client().set_window_size(width.saturating_add(frame(0)), height.saturating_add(frame(1))),
        )
        .await
    }

    /// The test's name, as given to [`Browser::start`].
    pub fn test_name(&self) -> &str {
        &self.test
    }

    /// Where this test's failure screenshot goes:
    /// `target/browser-screenshots/<test>.png`.
    pub fn failure_screenshot_path(&self) -> &Path {
        &self.failure_screenshot
    }

    /// This session's temporary directory: Chromium's `--user-data-dir`, its
    /// crash database, chromedriver's log. Each process of the session names
    /// it on its command line; it is removed when the browser closes.
    pub fn scratch_dir(&self) -> &Path {
        self.profile.path()
    }

    /// chromedriver's process id (also its process group, which Chromium shares).
    pub fn driver_pid(&self) -> u32 {
        self.driver.child.id()
    }

    /// Sets how long the `wait_for*` helpers wait (default [`DEFAULT_WAIT`]).
    pub fn set_wait_timeout(&mut self, timeout: Duration) {
        self.wait_timeout = timeout;
    }

    /// The fantoccini client, for what the helpers do not cover. Its failures
    /// take no screenshot; [`Browser::save_failure_screenshot`] can.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the client is only taken by close and drop, which own the browser")
    }

    /// Runs one WebDriver command, bounded; a failure saves the failure
    /// screenshot and names it.
    async fn command<T, F>(&self, action: impl FnOnce() -> String, future: F) -> Result<T, BrowserError>
    where
        F: Future<Output = Result<T, CmdError>>,
    {
        match tokio::time::timeout(COMMAND_TIMEOUT, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(BrowserError::Command {
                action: action(),
                screenshot: self.save_failure_screenshot().await,
                source: Box::new(source),
            }),
            Err(_) => {
                Err(BrowserError::CommandTimeout { action: action(), screenshot: self.save_failure_screenshot().await })
            }
        }
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.command(|| format!("opening {url}"), self.client().goto(url)).await
    }

    /// The address of the page shown now.
    pub async fn current_url(&self) -> Result<String, BrowserError> {
        self.command(|| "reading the current URL".to_owned(), self.client().current_url())
            .await
            .map(|url| url.to_string())
    }

    /// The page's `<title>`.
    pub async fn title(&self) -> Result<String, BrowserError> {
        self.command(|| "reading the page title".to_owned(), self.client().title()).await
    }

    /// The first element matching `css`, now (no waiting); an error when none does.
    pub async fn find(&self, css: &str) -> Result<Element, BrowserError> {
        self.command(|| format!("finding `{css}`"), self.client().find(Locator::Css(css))).await
    }

    /// Every element matching `css` now, in document order (maybe none).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, BrowserError> {
        self.command(|| format!("finding all of `{css}`"), self.client().find_all(Locator::Css(css))).await
    }

    /// How many elements match `css` now. No match is `0`, not an error, so
    /// this is the way to check that something is absent.
    pub async fn count(&self, css: &str) -> Result<usize, BrowserError> {
        self.find_all(css).await.map(|all| all.len())
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        let element = self.find(css).await?;
        self.command(|| format!("reading the text of `{css}`"), element.text()).await
    }

    /// The rendered text of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Result<Vec<String>, BrowserError> {
        let mut texts = Vec::new();
        for element in self.find_all(css).await? {
            texts.push(self.command(|| format!("reading the text of `{css}`"), element.text()).await?);
        }
        Ok(texts)
    }

    /// The attribute `name` of the first element matching `css` (`None`
    /// when it has none).
    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>, BrowserError> {
        let element = self.find(css).await?;
        self.command(|| format!("reading the attribute {name} of `{css}`"), element.attr(name)).await
    }

    /// The current value of the input, select or textarea matching `css`.
    pub async fn value(&self, css: &str) -> Result<String, BrowserError> {
        let element = self.find(css).await?;
        self.command(|| format!("reading the value of `{css}`"), element.prop("value"))
            .await
            .map(Option::unwrap_or_default)
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        self.command(|| format!("clicking `{css}`"), element.click()).await
    }

    /// Empties the input or textarea matching `css`, then types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        self.command(|| format!("clearing `{css}`"), element.clear()).await?;
        self.command(|| format!("typing into `{css}`"), element.send_keys(text)).await
    }

    /// Chooses the option whose `value` is `value` in the select matching `css`.
    pub async fn select(&self, css: &str, value: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        self.command(|| format!("choosing the option {value:?} of `{css}`"), element.select_by_value(value)).await
    }

    /// Submits the form matching `css` the way a user does: it clicks the
    /// form's first `input[type=submit]` or `button[type=submit]`. The next
    /// page may still be loading when this returns: follow with a `wait_for*`.
    pub async fn submit(&self, css: &str) -> Result<(), BrowserError> {
        let form = self.command(|| format!("finding the form `{css}`"), self.client().form(Locator::Css(css))).await?;
        self.command(|| format!("submitting the form `{css}`"), form.submit()).await
    }

    /// Runs `script` in the page (`arguments[i]` are `args`) and returns what
    /// it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, BrowserError> {
        self.command(|| "running a script in the page".to_owned(), self.client().execute(script, args)).await
    }

    /// Looks at the page every 100 ms until `probe` gives `Ok(Some(_))`, for
    /// at most the wait timeout. Until then `probe` says in `Err` what it saw.
    async fn poll<T, F, Fut>(&self, what: impl FnOnce() -> String, mut probe: F) -> Result<T, BrowserError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, String>>,
    {
        let started = Instant::now();
        let attempts = self.wait_timeout.as_millis() / POLL.as_millis() + 1;
        let mut last = "nothing yet".to_owned();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(POLL).await;
            }
            match tokio::time::timeout(COMMAND_TIMEOUT, probe()).await {
                Ok(Ok(Some(found))) => return Ok(found),
                Ok(Ok(None)) => {}
                Ok(Err(seen)) => last = seen,
                Err(_) => {
                    last = format!("no answer within {} s", COMMAND_TIMEOUT.as_secs());
                }
            }
            if started.elapsed() >= self.wait_timeout {
                break;
            }
        }
        Err(BrowserError::WaitTimeout {
            what: what(),
            waited: started.elapsed(),
            last,
            screenshot: self.save_failure_screenshot().await,
        })
    }

    /// Waits until an element matches `css`, and returns it.
    pub async fn wait_for(&self, css: &str) -> Result<Element, BrowserError> {
        let client = self.client();
        self.poll(
            || format!("an element matching `{css}`"),
            || async move {
                match client.find(Locator::Css(css)).await {
                    Ok(element) => Ok(Some(element)),
                    Err(error) if error.is_no_such_element() => Err("no match".to_owned()),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await
    }

    /// Waits until the first element matching `css` has a text that contains
    /// `needle`, and returns that whole text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> Result<String, BrowserError> {
        let client = self.client();
        self.poll(
            || format!("{needle:?} in the text of `{css}`"),
            || async move {
                let element = match client.find(Locator::Css(css)).await {
                    Ok(element) => element,
                    Err(error) if error.is_no_such_element() => {
                        return Err(format!("no element matching `{css}`"));
                    }
                    Err(error) => return Err(error.to_string()),
                };
                // A stale element (the page changed under it) is looked up again.
                match element.text().await {
                    Ok(text) if text.contains(needle) => Ok(Some(text)),
                    Ok(text) => Err(format!("{text:?}")),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str) -> Result<(), BrowserError> {
        let client = self.client();
        self.poll(
            || format!("no element matching `{css}`"),
            || async move {
                match client.find_all(Locator::Css(css)).await {
                    Ok(all) if all.is_empty() => Ok(Some(())),
                    Ok(all) => Err(format!("{} element(s) matching `{css}`", all.len())),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await
    }

    /// The visible page as PNG bytes.
    pub async fn screenshot(&self) -> Result<Vec<u8>, BrowserError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, self.client().screenshot()).await {
            Ok(Ok(png)) => Ok(png),
            Ok(Err(source)) => Err(BrowserError::Command {
                action: "taking a screenshot".to_owned(),
                screenshot: None,
                source: Box::new(source),
            }),
            Err(_) => Err(BrowserError::CommandTimeout { action: "taking a screenshot".to_owned(), screenshot: None }),
        }
    }

    /// Saves the visible page as a PNG at `path` (parent directories are
    /// made), e.g. a picture for the docs. Returns `path`.
    pub async fn save_screenshot_to(&self, path: impl AsRef<Path>) -> Result<PathBuf, BrowserError> {
        let path = path.as_ref().to_owned();
        let png = self.screenshot().await?;
        write_png(&path, &png)?;
        Ok(path)
    }

    /// Saves the failure screenshot (`target/browser-screenshots/<test>.png`)
    /// now, e.g. before returning an error that is not the browser's. Returns
    /// its path, or `None` (with a line on stderr) when it could not be saved.
    pub async fn save_failure_screenshot(&self) -> Option<PathBuf> {
        let saved = self.save_screenshot_to(&self.failure_screenshot).await;
        report_failure_screenshot(&self.test, saved)
    }

    /// Ends the WebDriver session (Chromium quits), then stops chromedriver and
    /// removes the temporary profile. The drop does the same without reporting
    /// errors; this reports a session that did not close.
    pub async fn close(mut self) -> Result<(), BrowserError> {
        let closed = match self.client.take() {
            Some(client) => match tokio::time::timeout(COMMAND_TIMEOUT, client.close()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(BrowserError::Command {
                    action: "closing the browser session".to_owned(),
                    screenshot: None,
                    source: Box::new(source),
                }),
                Err(_) => Err(BrowserError::CommandTimeout {
                    action: "closing the browser session".to_owned(),
                    screenshot: None,
                }),
            },
            None => Ok(()),
        };
        self.stop_processes();
        closed
    }

    /// Kills chromedriver and Chromium at once, without ending the session
    /// first (as if the browser crashed), and removes the scratch directory.
    /// No process of the session is left when this returns.
    pub fn kill(mut self) {
        self.driver.kill();
        // Dropped after the kill: the client's goodbye finds no chromedriver.
        self.client = None;
        self.stop_processes();
    }

    /// Kills what is left of chromedriver and Chromium, and stops the runtime.
    fn stop_processes(&mut self) {
        self.driver.kill();
        self.runtime.shutdown();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            self.stop_processes();
            return;
        };
        if std::thread::panicking() {
            let shot = client.clone();
            let taken = self.runtime.block_on(DROP_STEP_TIMEOUT, async move { shot.screenshot().await });
            let saved = match taken {
                Some(Ok(png)) => write_png(&self.failure_screenshot, &png).map(|()| self.failure_screenshot.clone()),
                Some(Err(source)) => Err(BrowserError::Command {
                    action: "taking a screenshot".to_owned(),
                    screenshot: None,
                    source: Box::new(source),
                }),
                None => {
                    Err(BrowserError::CommandTimeout { action: "taking a screenshot".to_owned(), screenshot: None })
                }
            };
            report_failure_screenshot(&self.test, saved);
        }
        let _ = self.runtime.block_on(DROP_STEP_TIMEOUT, async move { client.close().await });
        self.stop_processes();
    }
}

/// The last lines of chromedriver's log (each cut at 300 characters), as lines
/// to follow an error message; empty when there is no log.
fn log_tail(log: &Path) -> String {
    const LINES: usize = 12;
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    let mut tail = "\n  the end of chromedriver's log:".to_owned();
    for line in &lines[lines.len().saturating_sub(LINES)..] {
        tail.push_str("\n    ");
        tail.extend(line.chars().take(300));
    }
    tail
}

fn write_png(path: &Path, png: &[u8]) -> Result<(), BrowserError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))?;
    }
    std::fs::write(path, png).map_err(io_error(format!("write {}", path.display())))
}

/// Says on stderr (not captured) where the failure screenshot went, or why not.
fn report_failure_screenshot(test: &str, saved: Result<PathBuf, BrowserError>) -> Option<PathBuf> {
    let mut stderr = std::io::stderr();
    match saved {
        Ok(path) => {
            let _ = writeln!(stderr, "browser: {test}: failure screenshot: {}", path.display());
            Some(path)
        }
        Err(error) => {
            let _ = writeln!(stderr, "browser: {test}: no failure screenshot: {error:?}");
            None
        }
    }
}

/// The session's capabilities: headless Chromium at `chromium`, a fresh
/// profile, 1280x900, nothing that reaches the network by itself.
fn capabilities(chromium: &Path, user_data: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        // Containers give /dev/shm 64 MB; Chromium then crashes on big pages.
        "--disable-dev-shm-usage",
        WINDOW_SIZE,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("--user-data-dir={}", user_data.display())]);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".to_owned(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium.display().to_string(),
            "args": args.collect::<Vec<_>>(),
        }),
    );
    let bound = u64::try_from(COMMAND_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    capabilities.insert("timeouts".to_owned(), json!({ "pageLoad": bound, "script": bound, "implicit": 0 }));
    capabilities
}

/// Reads chromedriver's stdout until `ChromeDriver was started successfully on
/// port N.`, then drains the rest on the same thread so that chromedriver never
/// blocks on a full pipe. The error says what it printed instead.
async fn read_port(stdout: std::process::ChildStdout) -> Result<u16, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("chromedriver-stdout".to_owned())
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut seen = Vec::new();
            let mut line = String::new();
            let found = loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break None,
                    Ok(_) => {}
                }
                if let Some(port) = parse_port(&line) {
                    break Some(port);
                }
                if seen.len() < 20 {
                    seen.push(line.trim_end().to_owned());
                }
            };
            let _ = tx.send(
                found.ok_or_else(|| format!("it exited without printing its port; it printed: {:?}", seen.join(" | "))),
            );
            if found.is_some() {
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            }
        })
        .map_err(|error| format!("no thread to read its output: {error}"))?;
    rx.await.unwrap_or_else(|_| Err("its output reader stopped".to_owned()))
}

/// The port in chromedriver's `ChromeDriver was started successfully on port 41231.`
fn parse_port(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|port| *port != 0)
}

/// Asks chromedriver's `/status` until it says `"ready":true`: at most
/// [`STATUS_ATTEMPTS`] times, and for at most [`STATUS_DEADLINE`] in all.
async fn wait_ready(port: u16) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    for attempt in 0..STATUS_ATTEMPTS {
        if attempt > 0 {
            if started.elapsed() >= STATUS_DEADLINE {
                break;
            }
            tokio::time::sleep(STATUS_INTERVAL).await;
        }
        match tokio::time::timeout(STATUS_TRY_TIMEOUT, status(port)).await {
            Ok(Ok(body)) if body.contains("\"ready\":true") => return Ok(()),
            Ok(Ok(body)) => last = body,
            Ok(Err(error)) => last = error.to_string(),
            Err(_) => last = format!("no answer within {} ms", STATUS_TRY_TIMEOUT.as_millis()),
        }
    }
    Err(format!(
        "its /status on 127.0.0.1:{port} was not ready after {} ms (last: {last})",
        started.elapsed().as_millis()
    ))
}

/// One `GET /status`: the response body, read by its `Content-Length`
/// (chromedriver keeps the connection open).
async fn status(port: u16) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            if let Some(length) = length
                && response.len() >= end + 4 + length
            {
                let body = &response[end + 4..end + 4 + length];
                return Ok(String::from_utf8_lossy(body).replace(char::is_whitespace, ""));
            }
        }
        if response.len() > 64 * 1024 {
            return Err(std::io::Error::other("a /status answer over 64 KiB"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(String::from_utf8_lossy(&response).replace(char::is_whitespace, ""));
        }
        response.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_port_chromedriver_prints() {
        let cases = [
            ("ChromeDriver was started successfully on port 41231.\n", Some(41231)),
            ("ChromeDriver was started successfully on port 9515.", Some(9515)),
            ("Starting ChromeDriver 156.0.8078.114 (...) on port 0\n", None),
            ("ChromeDriver was started successfully.\n", None),
            ("ChromeDriver was started successfully on port 0.\n", None),
        ];
        for (line, port) in cases {
            assert_eq!(parse_port(line), port, "{line:?}");
        }
    }

    #[test]
    fn test_names_become_file_names() {
        assert_eq!(file_stem("console_login"), "console_login");
        assert_eq!(file_stem("a/b c::d"), "a_b_c__d");
        assert_eq!(file_stem(""), "browser");
    }

    #[test]
    fn an_explicit_path_is_the_only_place_looked_at() {
        let path = OsString::from("/usr/bin:/bin");
        let looked = locate(Some(Path::new("/nonexistent/chromium")), &["sh"], Some(&path), "/bin/sh");
        assert_eq!(looked, Err("/nonexistent/chromium".to_owned()));
        let found = locate(None, &["sh"], Some(&path), "/nonexistent");
        assert!(found.is_ok_and(|p| p.ends_with("sh")));
        let missing = locate(None, &["no-such-binary-isx"], Some(&path), "/nonexistent/x");
        assert_eq!(missing, Err("no-such-binary-isx on PATH, /nonexistent/x".to_owned()));
    }
}
