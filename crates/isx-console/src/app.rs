//! What every page shares: the session, the templates, and who the console
//! acts as; pages and error pages rendered from them.

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::{session, views};

/// Renders pages for every handler.
pub(crate) struct Pages {
    pub(crate) session: session::Session,
    pub(crate) views: views::Views,
    /// Who the console acts as, for the header.
    pub(crate) acting: String,
    /// The auditor's pages are served (a gateway was given).
    pub(crate) has_auditor: bool,
    /// The policy pages are served (a policy directory was given).
    pub(crate) has_policy: bool,
}

/// The parsed urlencoded body of a POST, for the handlers.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormPairs(pub(crate) Vec<(String, String)>);

impl Pages {
    /// Renders `template` with `ctx` (and what every page needs).
    pub(crate) fn page(&self, template: &str, ctx: minijinja::Value) -> Response {
        self.page_with(StatusCode::OK, template, ctx)
    }

    /// As [`Pages::page`], with a status.
    pub(crate) fn page_with(&self, status: StatusCode, template: &str, ctx: minijinja::Value) -> Response {
        let common = minijinja::context! {
            token => self.session.token(),
            acting => &self.acting,
            has_auditor => self.has_auditor,
            has_policy => self.has_policy,
            page => template.trim_end_matches(".html"),
        };
        match self.views.render(template, minijinja::context! { ..ctx, ..common }) {
            Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "console template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("template {template}: {e}")).into_response()
            }
        }
    }

    /// An error page that names the problem.
    pub(crate) fn error(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.page_with(status, "error.html", minijinja::context! { title, message, status => status.as_u16() })
    }
}
