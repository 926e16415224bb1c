//! The policy officer's pages: the proportionality matrix (alerts × agencies),
//! a draft policy compared cell by cell, and the rule table. They decide
//! locally with [`isx_policy::matrix`], so they need no gateway and no PKI.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use isx_core::NodeInfo;
use isx_core::redaction::RedactionProfile;
use isx_policy::matrix::{Comparison, Matrix, RuleTable, load_draft};
use isx_policy::{Disclosure, PolicyEngine};
use minijinja::context;

pub use isx_policy::matrix::MatrixAlert;

use crate::app::{FormPairs, Pages};
use crate::error::ConsoleError;
use crate::facets::Form;

/// Most alerts the matrix holds (shipped and uploaded).
pub const MAX_ROWS: usize = 500;

/// What the policy pages decide for.
#[derive(Debug, Clone)]
pub struct PolicySetup {
    /// The registered nodes: the matrix's columns.
    pub nodes: Vec<NodeInfo>,
    /// The redaction profile.
    pub profile: RedactionProfile,
    /// The policy in force.
    pub policy_dir: PathBuf,
    /// A draft to compare with it.
    pub draft_dir: Option<PathBuf>,
    /// The alerts: the matrix's rows.
    pub alerts: Vec<MatrixAlert>,
}

/// A draft, loaded or refused.
enum Draft {
    Loaded { matrix: Matrix, comparison: Comparison },
    Invalid { dir: String, lines: Vec<String> },
}

struct PolicyState {
    alerts: Vec<MatrixAlert>,
    matrix: Matrix,
    draft_dir: Option<PathBuf>,
    draft: Option<Draft>,
}

/// The policy pages' state.
pub(crate) struct Policy {
    setup: PolicySetup,
    current: Disclosure,
    state: Mutex<PolicyState>,
}

impl Policy {
    /// Loads the policy (and the draft, if any) and decides the matrix.
    pub(crate) fn load(setup: PolicySetup) -> Result<Self, ConsoleError> {
        let engine = PolicyEngine::load(&setup.policy_dir)
            .map_err(|e| ConsoleError::Policy(format!("--policy {}: {e}", setup.policy_dir.display())))?;
        let current = Disclosure::new(Arc::new(engine), setup.profile.clone());
        let matrix = Matrix::build(&current, &setup.nodes, &setup.alerts);
        let state =
            PolicyState { alerts: setup.alerts.clone(), matrix, draft_dir: setup.draft_dir.clone(), draft: None };
        let policy = Self { setup, current, state: Mutex::new(state) };
        policy.decide();
        Ok(policy)
    }

    /// Decides the matrix again, and the draft's.
    fn decide(&self) {
        let mut s = self.state.lock().expect("policy lock");
        s.matrix = Matrix::build(&self.current, &self.setup.nodes, &s.alerts);
        s.draft = s.draft_dir.as_ref().map(|dir| match load_draft(dir, self.setup.profile.clone()) {
            Ok(d) => {
                let matrix = Matrix::build(&d, &self.setup.nodes, &s.alerts);
                let comparison = Comparison::build(&s.matrix, &matrix);
                Draft::Loaded { matrix, comparison }
            }
            Err(e) => Draft::Invalid { dir: dir.display().to_string(), lines: e.lines },
        });
    }
}

/// The state of the policy pages.
pub(crate) struct Ctx {
    pub(crate) pages: Arc<Pages>,
    pub(crate) policy: Option<Policy>,
}

impl Ctx {
    fn page(&self, template: &str, ctx: minijinja::Value) -> Response {
        self.pages.page(template, ctx)
    }

    fn error(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.pages.error(status, title, message)
    }
}

fn policy(app: &Ctx) -> Result<&Policy, Response> {
    app.policy.as_ref().ok_or_else(|| {
        app.error(
            StatusCode::NOT_FOUND,
            "No policy directory",
            "the policy pages need a policy directory: start the console with --policy DIR (for example deploy/local/policy)",
        )
    })
}

/// `GET /policy`: the matrix, marked with the draft's changes.
pub(crate) async fn matrix(State(app): State<Arc<Ctx>>) -> Response {
    let p = match policy(&app) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let s = p.state.lock().expect("policy lock");
    // changes[row][col]: the change there, if any.
    let (changes, draft_ctx) = match &s.draft {
        Some(Draft::Loaded { matrix, comparison }) => {
            let mut grid = vec![vec![None; s.matrix.columns.len()]; s.matrix.rows.len()];
            for c in &comparison.changes {
                if let Some(cell) = grid.get_mut(c.row).and_then(|r| r.get_mut(c.col)) {
                    *cell = Some(c.clone());
                }
            }
            let ctx = context! {
                loaded => true,
                dir => &comparison.draft_dir,
                version => &matrix.policy_version,
                changes => &comparison.changes,
            };
            (grid, Some(ctx))
        }
        Some(Draft::Invalid { dir, lines }) => (vec![], Some(context! { loaded => false, dir, errors => lines })),
        None => (vec![], None),
    };
    app.page(
        "matrix.html",
        context! {
            matrix => &s.matrix,
            changes,
            draft => draft_ctx,
            draft_dir => s.draft_dir.as_ref().map(|d| d.display().to_string()),
        },
    )
}

/// `POST /policy/draft`: compare with a draft directory (`dir`; empty: none).
pub(crate) async fn set_draft(
    State(app): State<Arc<Ctx>>,
    Extension(FormPairs(pairs)): Extension<FormPairs>,
) -> Response {
    let p = match policy(&app) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let form = match Form::parse(pairs, &["dir"]) {
        Ok(f) => f,
        Err(e) => return app.error(StatusCode::BAD_REQUEST, "Check the form", &e.to_string()),
    };
    let dir = form.get("dir").map(PathBuf::from);
    if let Some(d) = &dir
        && !d.is_dir()
    {
        return app.error(
            StatusCode::BAD_REQUEST,
            "No such draft",
            &format!(
                "dir: {} is not a directory: give a policy directory (*.cedar and one *.cedarschema)",
                d.display()
            ),
        );
    }
    p.state.lock().expect("policy lock").draft_dir = dir;
    p.decide();
    Redirect::to("/policy").into_response()
}

/// `POST /policy/alert`: adds an uploaded alert (`alert`, JSON; `name`) as a row.
pub(crate) async fn add_alert(
    State(app): State<Arc<Ctx>>,
    Extension(FormPairs(pairs)): Extension<FormPairs>,
) -> Response {
    let p = match policy(&app) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let form = match Form::parse(pairs, &["alert", "name"]) {
        Ok(f) => f,
        Err(e) => return app.error(StatusCode::BAD_REQUEST, "Check the form", &e.to_string()),
    };
    let Some(text) = form.get("alert") else {
        return app.error(
            StatusCode::BAD_REQUEST,
            "Check the form",
            "alert: choose an alert file (canonical JSON, as deploy/local/alerts/*.json) or paste it",
        );
    };
    let name = form.get("name").unwrap_or("uploaded alert");
    let alert = match MatrixAlert::from_json(name, text) {
        Ok(a) => a,
        Err(e) => return app.error(StatusCode::BAD_REQUEST, "Not an alert", &format!("alert: {e}")),
    };
    {
        let mut s = p.state.lock().expect("policy lock");
        if s.alerts.len() >= MAX_ROWS {
            return app.error(
                StatusCode::BAD_REQUEST,
                "Too many alerts",
                &format!("the matrix holds at most {MAX_ROWS} alerts; restart the console to begin again"),
            );
        }
        s.alerts.push(alert);
    }
    p.decide();
    Redirect::to("/policy#matrix-end").into_response()
}

/// `GET /policy/rules`: each rule, the cells it decides, and those that decide none.
pub(crate) async fn rules(State(app): State<Arc<Ctx>>) -> Response {
    let p = match policy(&app) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let s = p.state.lock().expect("policy lock");
    let table = RuleTable::build(p.current.engine(), &s.matrix);
    let never = table.never_fires().count();
    app.page(
        "rules.html",
        context! { table => &table, never, rows => s.matrix.rows.len(), columns => s.matrix.columns.len() },
    )
}
