//! JUnit XML for CI systems: one `<testsuite>` per scenario, one
//! `<testcase>` per expectation.

use super::run::{Report, Verdict};

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML document for `reports`.
pub fn render(reports: &[Report]) -> String {
    let tests: usize = reports.iter().map(|r| r.checks.len()).sum();
    let failures: usize = reports.iter().map(Report::failed).sum();
    let skipped: usize = reports.iter().map(Report::skipped).sum();
    let time: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"isx scenarios\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">\n"
    );
    for r in reports {
        let skipped = r.skipped();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" file=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
            escape(&r.name),
            escape(&r.path.display().to_string()),
            r.checks.len(),
            r.failed(),
            r.elapsed.as_secs_f64()
        ));
        for c in &r.checks {
            let name = escape(&format!("step {} (line {}): {}", c.step, c.line, c.what));
            let class = escape(&r.name);
            match &c.verdict {
                Verdict::Pass => xml.push_str(&format!("    <testcase classname=\"{class}\" name=\"{name}\"/>\n")),
                Verdict::Fail(why) => xml.push_str(&format!(
                    "    <testcase classname=\"{class}\" name=\"{name}\">\n      <failure message=\"{}\"/>\n    </testcase>\n",
                    escape(why)
                )),
                Verdict::Skipped(why) => xml.push_str(&format!(
                    "    <testcase classname=\"{class}\" name=\"{name}\">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    escape(why)
                )),
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::run::Check;
    use super::*;

    #[test]
    fn failures_and_skips_are_marked_and_text_is_escaped() {
        let report = Report {
            path: "s.toml".into(),
            name: "a <b> & \"c\"".into(),
            checks: vec![
                Check { step: 1, line: 3, what: "ok one".into(), verdict: Verdict::Pass },
                Check { step: 2, line: 7, what: "fr <x>".into(), verdict: Verdict::Fail("got full & more".into()) },
                Check { step: 3, line: 9, what: "restart".into(), verdict: Verdict::Skipped("elsewhere".into()) },
            ],
            elapsed: Duration::from_millis(1500),
            policies: Default::default(),
            alerts: vec![],
        };
        let xml = render(&[report]);
        assert!(xml.contains("<testsuites name=\"isx scenarios\" tests=\"3\" failures=\"1\" skipped=\"1\" "), "{xml}");
        assert!(xml.contains("<testsuite name=\"a &lt;b&gt; &amp; &quot;c&quot;\" file=\"s.toml\" tests=\"3\" failures=\"1\" skipped=\"1\" "), "{xml}");
        assert!(xml.contains("<failure message=\"got full &amp; more\"/>"));
        assert!(xml.contains("step 2 (line 7): fr &lt;x&gt;"));
        assert_eq!(xml.matches("<testcase").count(), 3);
    }
}
