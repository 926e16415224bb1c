//! The templates and static files: files under `templates/` and `static/`
//! that a maintainer edits, compiled into the binary. With `--templates DIR`
//! the console reads the templates from DIR on every page instead, so an
//! edit shows on the next reload. Pages are HTML-escaped by default
//! (minijinja escapes every `.html` template); the only unescaped values are
//! the charts' SVG, which [`crate::charts`] escapes itself.

use std::path::PathBuf;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use minijinja::Environment;

use crate::error::ConsoleError;

/// Every template, by file name, as compiled in.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("overview.html", include_str!("../templates/overview.html")),
    ("search.html", include_str!("../templates/search.html")),
    ("subject.html", include_str!("../templates/subject.html")),
    ("alert.html", include_str!("../templates/alert.html")),
    ("hits.html", include_str!("../templates/hits.html")),
    ("bundle.html", include_str!("../templates/bundle.html")),
    ("matrix.html", include_str!("../templates/matrix.html")),
    ("rules.html", include_str!("../templates/rules.html")),
];

/// The static files: the stylesheet and the one small script.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", "text/css; charset=utf-8", include_str!("../static/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../static/console.js")),
];

/// The templates, compiled in or read from a directory.
pub(crate) struct Views {
    dir: Option<PathBuf>,
    env: Environment<'static>,
}

fn environment(sources: Vec<(String, String)>) -> Result<Environment<'static>, ConsoleError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, text) in sources {
        env.add_template_owned(name.clone(), text)
            .map_err(|e| ConsoleError::Template { name, message: e.to_string() })?;
    }
    Ok(env)
}

fn read_dir(dir: &std::path::Path) -> Result<Vec<(String, String)>, ConsoleError> {
    TEMPLATES
        .iter()
        .map(|(name, _)| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|text| ((*name).to_owned(), text))
                .map_err(|e| ConsoleError::Template { name: path.display().to_string(), message: e.to_string() })
        })
        .collect()
}

impl Views {
    /// The compiled-in templates, or those of `dir` (checked now, read again on every page).
    pub(crate) fn new(dir: Option<PathBuf>) -> Result<Self, ConsoleError> {
        let sources = match &dir {
            Some(d) => read_dir(d)?,
            None => TEMPLATES.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect(),
        };
        Ok(Self { env: environment(sources)?, dir })
    }

    /// Renders one template.
    pub(crate) fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, String> {
        match &self.dir {
            None => self.env.get_template(name).and_then(|t| t.render(ctx)).map_err(|e| format!("{e:#}")),
            Some(dir) => {
                let env = read_dir(dir).and_then(environment).map_err(|e| e.to_string())?;
                env.get_template(name).and_then(|t| t.render(ctx)).map_err(|e| format!("{e:#}"))
            }
        }
    }
}

/// `GET /static/FILE`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, body)) => ([(header::CONTENT_TYPE, *mime)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_a_directory_can_replace_them() {
        Views::new(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in TEMPLATES {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("error.html"), "edited: {{ message }}").unwrap();
        let views = Views::new(Some(dir.path().to_path_buf())).unwrap();
        let html = views.render("error.html", minijinja::context! { message => "<b>x</b>" }).unwrap();
        assert_eq!(html, "edited: &lt;b&gt;x&lt;&#x2f;b&gt;");
        std::fs::remove_file(dir.path().join("rules.html")).unwrap();
        assert!(matches!(Views::new(Some(dir.path().to_path_buf())), Err(ConsoleError::Template { .. })));
    }
}
