//! The alerts scenarios publish, for the policy console's matrix
//! ([`isx_policy::matrix`]): each `do = "publish"` step's alert, built by
//! the code the runner publishes with ([`publish_alert`]), keeping the
//! alert id of the file or inline table where the runner makes a fresh one.

use std::path::Path;

use isx_core::json::from_json;
use isx_core::wire::Alert;
use isx_policy::matrix::MatrixAlert;

use super::step::{AlertSource, PublishStep, Step};
use super::{Scenario, ScenarioError, Source};

/// The alert a publish step sends: its `file` (relative to `base`, read from
/// `source`) or `inline` table, with its `patch` deep-merged over it. The
/// runner then gives it a fresh alert id unless the step says `keep_id`.
/// The error names the file, or `inline` or `patch`, and the problem.
pub fn publish_alert(step: &PublishStep, base: &Path, source: &dyn Source) -> Result<Alert, String> {
    let mut value: serde_json::Value = match &step.alert {
        AlertSource::File(file) => {
            let path = base.join(file);
            let text = source.read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        AlertSource::Inline(inline) => serde_json::to_value(inline).map_err(|e| format!("inline: {e}"))?,
    };
    if let Some(patch) = &step.patch {
        isx_policy::table::merge(&mut value, &serde_json::to_value(patch).map_err(|e| format!("patch: {e}"))?);
    }
    from_json::<Alert>(&value.to_string(), "the step's alert").map_err(|e| e.to_string())
}

impl Scenario {
    /// The alerts this scenario publishes, in step order: each publish step
    /// that expects the gateway to accept it (`expect_code` OK; refused ones
    /// publish nothing), once per alert name (the same name again is a resend
    /// of the same alert). Named by the step's alert name, with the source
    /// `scenario FILE step NAME`. Relayed copies (`do = "forward"`) are not
    /// included.
    pub fn published_alerts(&self, source: &dyn Source) -> Result<Vec<MatrixAlert>, ScenarioError> {
        let file = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let base = self.base();
        let mut alerts: Vec<MatrixAlert> = Vec::new();
        for entry in &self.steps {
            let Step::Publish(s) = &entry.step else { continue };
            if s.call.expect_code.0 != tonic::Code::Ok || alerts.iter().any(|a| a.name == s.step.name) {
                continue;
            }
            let alert = publish_alert(&s.step, &base, source).map_err(|message| ScenarioError::Invalid {
                path: self.path.clone(),
                line: entry.line,
                message: format!("step {}: do = \"publish\": {message}", entry.number),
            })?;
            alerts.push(MatrixAlert::new(&s.step.name, format!("scenario {file} step {}", s.step.name), alert));
        }
        Ok(alerts)
    }
}

/// The alerts every scenario (`*.toml`) in `dir` publishes
/// ([`Scenario::published_alerts`]), the files in name order, read from disk.
pub fn scenario_alerts(dir: &Path) -> Result<Vec<MatrixAlert>, ScenarioError> {
    let read = |source| ScenarioError::Read { path: dir.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    let mut alerts = Vec::new();
    for path in files {
        alerts.extend(Scenario::load(&path)?.published_alerts(&super::Disk)?);
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use isx_core::wire::Tlp;

    use super::*;

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local")
    }

    fn file_alert(name: &str) -> Alert {
        let text = std::fs::read_to_string(shipped().join("alerts").join(name)).unwrap();
        from_json(&text, name).unwrap()
    }

    #[test]
    fn every_shipped_scenario_publish_is_listed_as_the_runner_builds_it() {
        let alerts = scenario_alerts(&shipped().join("scenarios")).unwrap();
        let find = |source: &str| {
            alerts
                .iter()
                .find(|a| a.source == source)
                .unwrap_or_else(|| panic!("{source} not in {:?}", alerts.iter().map(|a| &a.source).collect::<Vec<_>>()))
        };

        // A file with a patch: the patch is applied, the file's id kept.
        let red = find("scenario 02-labels.toml step red-broadcast");
        assert_eq!(red.name, "red-broadcast");
        let mut want = file_alert("smuggling-network.json");
        want.labels.as_mut().unwrap().tlp = Tlp::Red as i32;
        want.addressees.clear();
        assert_eq!(red.alert, want);

        // A file without a patch is the file; an inline alert is its table.
        assert_eq!(find("scenario 01-showcase.toml step foreign-fighter").alert, file_alert("foreign-fighter.json"));
        let inline = &find("scenario 04-persons.toml step minor-suspect").alert;
        assert_eq!((inline.alert_id.as_str(), inline.subjects[0].minor), ("01JDQ3E1F2G3H4J5K6M7N8P9Q1", true));

        // Refused publishes publish nothing, and a resend is the same alert once.
        assert!(alerts.iter().all(|a| !a.source.contains(" step spoofed") && !a.source.contains(" step invalid")));
        let refusals: Vec<&str> =
            alerts.iter().filter(|a| a.source.starts_with("scenario 08-")).map(|a| a.name.as_str()).collect();
        assert_eq!(refusals, ["foreign-fighter"]);

        // Every scenario file that publishes is there, in file order.
        let mut files: Vec<&str> = alerts.iter().map(|a| a.source.split(' ').nth(1).unwrap()).collect::<Vec<_>>();
        files.dedup();
        assert_eq!(files.len(), 14, "{files:?}");
        assert!(files.is_sorted(), "{files:?}");
    }

    #[test]
    fn an_alert_that_does_not_build_names_the_scenario_step_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "{\"category\": \"CATEGORY_PIRACY\"}").unwrap();
        let text = "name = \"t\"\n\n[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"a.json\"\n";
        std::fs::write(dir.path().join("s.toml"), text).unwrap();
        let err = scenario_alerts(dir.path()).unwrap_err().to_string();
        assert!(err.contains("s.toml:3: step 1: do = \"publish\":") && err.contains("category"), "{err}");
    }
}
