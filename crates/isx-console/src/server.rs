//! The server: options, the router behind the guard, and the listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, Method, StatusCode, header};
use isx_node::ClientOptions;
use tokio_util::sync::CancellationToken;

use crate::app::{FormPairs, Pages};
use crate::error::ConsoleError;
use crate::policy::PolicySetup;
use crate::{auditor, policy, session, views};

/// What to serve.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Where to listen (default 127.0.0.1:0).
    pub listen: SocketAddr,
    /// The auditor's identity, for the auditor's pages.
    pub auditor: Option<ClientOptions>,
    /// Whom the console trusts for the log's key (`audit.pub`, pinned) and
    /// its witnesses (a witness policy).
    pub trust: isx_audit::verify::Trust,
    /// The policy officer's pages.
    pub policy: Option<PolicySetup>,
    /// Read the templates from this directory on every page (for editing them).
    pub templates: Option<PathBuf>,
    /// Largest request body (an uploaded bundle or alert), in bytes.
    pub max_body: usize,
    /// Why the auditor's pages read the log (recorded with every read):
    /// by default self-monitoring, case "console". The verification the
    /// overview runs states integrity, with the same case.
    pub reason: isx_core::wire::ReadReason,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auditor: None,
            trust: isx_audit::verify::Trust::default(),
            policy: None,
            templates: None,
            max_body: DEFAULT_MAX_BODY,
            reason: default_reason(),
        }
    }
}

/// The console's reason for its reads unless told otherwise:
/// self-monitoring, case "console".
pub fn default_reason() -> isx_core::wire::ReadReason {
    isx_core::read_reason::reason(isx_core::wire::ReadPurpose::SelfMonitoring, "console")
}

/// The default largest request body: 32 MiB (a bundle of ~20,000 records).
pub const DEFAULT_MAX_BODY: usize = 32 << 20;

/// A running console.
#[derive(Debug)]
pub struct Console {
    addr: SocketAddr,
    token: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Console {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open: with the session token.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.token)
    }

    /// The session token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops serving and waits for the server to end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.task.await.unwrap_or(Ok(()))
    }

    /// Waits until the server ends (it ends on an I/O error, or never).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

/// The hosts a console on `addr` answers to.
fn hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Starts the console: connects to the gateway (if an auditor is given),
/// loads the policy (if given), binds, and serves until [`Console::shutdown`].
pub async fn start(options: ConsoleOptions) -> Result<Console, ConsoleError> {
    if options.auditor.is_none() && options.policy.is_none() {
        return Err(ConsoleError::Nothing);
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ConsoleError::Listen { addr: options.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ConsoleError::Listen { addr: options.listen, source })?;
    let built = build(&options, addr).await?;
    let (token, router) = (built.token, built.router);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    Ok(Console { addr, token, shutdown, task })
}

/// A console's router, before it listens.
pub(crate) struct Built {
    pub(crate) router: Router,
    pub(crate) token: String,
    /// The auditor pages' state (tests wait on its verifications).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) auditor: Arc<auditor::Ctx>,
}

/// The router of a console that listens on `addr`: each page module's
/// routes with its own state, behind the guard.
pub(crate) async fn build(options: &ConsoleOptions, addr: SocketAddr) -> Result<Built, ConsoleError> {
    let views = views::Views::new(options.templates.clone())?;
    let auditor = match &options.auditor {
        Some(o) => Some(auditor::Auditor::connect(o, options.trust.clone(), options.reason.clone()).await?),
        None => None,
    };
    let policy = options.policy.clone().map(policy::Policy::load).transpose()?;
    let acting = match &options.auditor {
        Some(o) => format!(
            "{} ({}), reading for {}, case {}",
            o.node,
            o.officer,
            isx_core::read_reason::name(options.reason.purpose()).unwrap_or("no purpose"),
            options.reason.case_reference
        ),
        None => "policy officer (no gateway)".to_owned(),
    };
    let token = session::Session::random_token();
    let pages = Arc::new(Pages {
        session: session::Session::new(token.clone(), addr.port(), hosts(addr)),
        views,
        acting,
        has_auditor: auditor.is_some(),
        has_policy: policy.is_some(),
    });
    let audit = Arc::new(auditor::Ctx { pages: pages.clone(), auditor });
    let officer = Arc::new(policy::Ctx { pages: pages.clone(), policy });
    let guard_state = Arc::new(Guard { pages: pages.clone(), max_body: options.max_body });
    let auditor_routes = Router::new()
        .route("/", get(auditor::overview))
        .route("/verify", post(auditor::verify_now))
        .route("/verify/status", get(auditor::verify_status))
        .route("/search", get(auditor::search_form).post(auditor::search))
        .route("/export", post(auditor::export))
        .route("/subject", get(auditor::subject_form).post(auditor::subject))
        .route("/subject/csv", post(auditor::subject_csv))
        .route("/alert", get(auditor::alert_history))
        .route("/hits", get(auditor::open_hits))
        .route("/bundle", get(auditor::bundle_form).post(auditor::bundle_open))
        .with_state(audit.clone());
    let policy_routes = Router::new()
        .route("/policy", get(policy::matrix))
        .route("/policy/draft", post(policy::set_draft))
        .route("/policy/alert", post(policy::add_alert))
        .route("/policy/rules", get(policy::rules))
        .with_state(officer);
    let router = Router::new()
        .merge(auditor_routes)
        .merge(policy_routes)
        .route("/static/{file}", get(views::asset))
        .fallback(not_found)
        .with_state(pages)
        .layer(axum::middleware::from_fn_with_state(guard_state, guard));
    Ok(Built { router, token, auditor: audit })
}

/// What the guard needs.
struct Guard {
    pages: Arc<Pages>,
    max_body: usize,
}

async fn not_found(State(app): State<Arc<Pages>>) -> Response {
    app.error(StatusCode::NOT_FOUND, "No such page", "This console has no page at this address; use the menu above.")
}

/// Applies [`session`]'s checks, reads a POST's body once (bounded), and
/// sets the headers every response carries.
async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    use tracing::Instrument;
    // The path only: queries and bodies may carry what a page was asked about.
    let span =
        tracing::info_span!("console", method = %req.method(), path = req.uri().path(), acting = %g.pages.acting);
    let mut response = async {
        match admit(&g, req).await {
            Ok(req) => next.run(req).await,
            Err(response) => response,
        }
    }
    .instrument(span.clone())
    .await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: under it a browser sends `Origin: null` with the
    // console's own forms, and the Origin check would refuse them.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

async fn admit(g: &Guard, req: Request) -> Result<Request, Response> {
    let app = &g.pages;
    let refused = |e: session::Refused| app.error(StatusCode::FORBIDDEN, "Not this console's session", &e.to_string());
    let (parts, body) = req.into_parts();
    if parts.uri.path().starts_with("/static/") {
        app.session.check_host(&parts.headers).map_err(refused)?;
        return Ok(Request::from_parts(parts, body));
    }
    match parts.method {
        Method::GET | Method::HEAD => {
            match app.session.check_get(&parts.headers, parts.uri.path(), parts.uri.query()).map_err(refused)? {
                None => Ok(Request::from_parts(parts, body)),
                Some(enter) => Err((
                    StatusCode::SEE_OTHER,
                    [(header::SET_COOKIE, enter.set_cookie), (header::LOCATION, enter.location)],
                )
                    .into_response()),
            }
        }
        Method::POST => {
            app.session.check_post_head(&parts.headers).map_err(refused)?;
            let bytes = match axum::body::to_bytes(body, g.max_body).await {
                Ok(b) => b,
                Err(_) => {
                    return Err(app.error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Too large",
                        &format!(
                            "the request is larger than the console accepts ({} MiB); start the console with a larger --max-upload-mib",
                            g.max_body >> 20
                        ),
                    ));
                }
            };
            let urlencoded = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
            let pairs: Option<Vec<(String, String)>> =
                urlencoded.then(|| form_urlencoded::parse(&bytes).into_owned().collect());
            app.session.check_post_token(&parts.headers, pairs.as_deref()).map_err(refused)?;
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(FormPairs(pairs.unwrap_or_default()));
            Ok(req)
        }
        _ => Err(app.error(StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "the console answers GET and POST only")),
    }
}
