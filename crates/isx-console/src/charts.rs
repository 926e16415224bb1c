//! The overview's charts, tallied from verified records and drawn as inline
//! SVG (no script, no library), each with the same figures as a table for
//! screen readers and for copying.
//!
//! Colours are the Okabe–Ito palette, which readers with the common colour
//! vision deficiencies tell apart; every bar also carries its label in a
//! `<title>`, and the legend names each colour.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use isx_core::wire::{AuditRecord, Operation};
use serde::Serialize;

/// Okabe–Ito, then greys.
const PALETTE: [&str; 10] =
    ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#777777", "#BBBBBB"];

/// Counts taken from records as a verification streams them.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Records counted.
    pub records: u64,
    /// (time in ms, operation) of every record, in log order.
    times: Vec<(u64, i32)>,
    /// Denials and refusals by rule.
    denials: BTreeMap<String, u64>,
    /// Values seen, offered as the search form's suggestions.
    pub nodes: BTreeSet<String>,
    /// Purposes seen.
    pub purposes: BTreeSet<String>,
    /// Officers seen.
    pub officers: BTreeSet<String>,
}

/// The rule a denial or refusal names: its deciding policies, or the rule
/// or limit its detail names (`limits.rate_per_node` of
/// `RESOURCE_EXHAUSTED: limits.rate_per_node (5/s, burst 10)`).
pub fn denial_rules(r: &AuditRecord) -> Vec<String> {
    let mut rules: Vec<String> = r.policy_ids.clone();
    for x in &r.recipients {
        rules.extend(x.policy_ids.iter().cloned());
    }
    if rules.is_empty() {
        let detail = r.detail.split_once(": ").map(|(_, rest)| rest).unwrap_or(&r.detail);
        let rule = detail.split(" (").next().unwrap_or(detail).trim();
        rules.push(if rule.is_empty() { "(no rule named)".to_owned() } else { rule.to_owned() });
    }
    rules.sort();
    rules.dedup();
    rules
}

impl Tally {
    /// Counts one record.
    pub fn add(&mut self, r: &AuditRecord) {
        self.records += 1;
        let ms = r.time.as_ref().map(isx_core::timestamp::to_unix_millis).unwrap_or(0);
        self.times.push((ms, r.operation));
        if r.operation() == Operation::Denial {
            for rule in denial_rules(r) {
                *self.denials.entry(rule).or_default() += 1;
            }
        }
        if !r.node.is_empty() {
            self.nodes.insert(r.node.clone());
        }
        for x in &r.recipients {
            self.nodes.insert(x.node.clone());
        }
        if !r.purpose.is_empty() && self.purposes.len() < 200 {
            self.purposes.insert(r.purpose.clone());
        }
        if !r.officer.is_empty() && self.officers.len() < 200 {
            self.officers.insert(r.officer.clone());
        }
    }

    /// Records by operation, over up to `buckets` equal spans of time.
    pub fn by_operation(&self, buckets: usize) -> Series {
        let (Some(first), Some(last)) = (self.times.iter().map(|t| t.0).min(), self.times.iter().map(|t| t.0).max())
        else {
            return Series::default();
        };
        let span = (last - first).max(1);
        let width = span.div_ceil(buckets.max(1) as u64).max(1);
        let n = ((span / width) + 1) as usize;
        let mut ops: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        for &(t, op) in &self.times {
            ops.entry(op).or_insert_with(|| vec![0; n])[((t - first) / width) as usize] += 1;
        }
        let label = |i: usize| {
            let ms = first + i as u64 * width;
            isx_core::timestamp::rfc3339(&isx_core::timestamp::from_unix_millis(ms))
        };
        Series {
            columns: (0..n).map(label).collect(),
            rows: ops
                .into_iter()
                .map(|(op, counts)| {
                    let name = Operation::try_from(op).map(crate::text::operation).unwrap_or_else(|_| op.to_string());
                    (name, counts)
                })
                .collect(),
        }
    }

    /// Denials and refusals by rule, most first.
    pub fn denials(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.denials.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// Counts by row name over columns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Column labels (each bucket's start).
    pub columns: Vec<String>,
    /// Each row's name and its count per column.
    pub rows: Vec<(String, Vec<u64>)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Stacked columns, one per bucket, one colour per row, with a legend.
pub fn stacked_columns(series: &Series, title: &str) -> String {
    let (w, h, left, bottom) = (960.0, 260.0, 48.0, 40.0);
    let n = series.columns.len().max(1) as f64;
    let totals: Vec<u64> = (0..series.columns.len()).map(|i| series.rows.iter().map(|(_, c)| c[i]).sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_h = h - bottom - 10.0;
    let col_w = (w - left) / n;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {w} {} " role="img" aria-labelledby="chart-ops-title"><title id="chart-ops-title">{}</title>"#,
        h + 24.0 * series.rows.len().div_ceil(5) as f64,
        esc(title)
    );
    let _ = write!(svg, r##"<line x1="{left}" y1="{plot_h}" x2="{w}" y2="{plot_h}" stroke="#555"/>"##);
    let _ = write!(svg, r##"<text x="{}" y="14" font-size="12" text-anchor="end">{}</text>"##, left - 6.0, max as u64);
    for i in 0..series.columns.len() {
        let mut y = plot_h;
        for (k, (name, counts)) in series.rows.iter().enumerate() {
            let c = counts[i];
            if c == 0 {
                continue;
            }
            let bh = c as f64 / max * (plot_h - 10.0);
            y -= bh;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{}: {c} at {}</title></rect>"#,
                left + i as f64 * col_w + 2.0,
                (col_w - 4.0).max(1.0),
                PALETTE[k % PALETTE.len()],
                esc(name),
                esc(&series.columns[i])
            );
        }
    }
    for (i, label) in [(0, series.columns.first()), (series.columns.len().saturating_sub(1), series.columns.last())] {
        if let Some(label) = label {
            let anchor = if i == 0 { "start" } else { "end" };
            let x = if i == 0 { left } else { w };
            let _ = write!(
                svg,
                r#"<text x="{x}" y="{}" font-size="12" text-anchor="{anchor}">{}</text>"#,
                plot_h + 16.0,
                esc(label)
            );
        }
    }
    for (k, (name, _)) in series.rows.iter().enumerate() {
        let (x, y) = (left + (k % 5) as f64 * 180.0, h + 24.0 * (k / 5) as f64 - 8.0);
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}" font-size="13">{}</text>"##,
            y - 11.0,
            PALETTE[k % PALETTE.len()],
            x + 18.0,
            esc(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, one per (label, count).
pub fn bars(items: &[(String, u64)], title: &str) -> String {
    let (w, row, label_w) = (960.0, 26.0, 420.0);
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {w} {}" role="img" aria-labelledby="chart-denials-title"><title id="chart-denials-title">{}</title>"#,
        row * items.len().max(1) as f64 + 4.0,
        esc(title)
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        let bw = *n as f64 / max * (w - label_w - 60.0);
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" text-anchor="end">{}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="{}" fill="#D55E00"><title>{}: {n}</title></rect><text x="{:.1}" y="{}" font-size="13">{n}</text>"##,
            label_w - 8.0,
            y + 16.0,
            esc(label),
            row - 8.0,
            esc(label),
            label_w + bw + 6.0,
            y + 16.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op: Operation, ms: u64, detail: &str, policies: &[&str]) -> AuditRecord {
        AuditRecord {
            operation: op as i32,
            time: Some(isx_core::timestamp::from_unix_millis(ms)),
            detail: detail.into(),
            policy_ids: policies.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn denials_count_by_rule_or_by_the_limit_named() {
        let mut t = Tally::default();
        t.add(&record(Operation::Denial, 1, "", &["tlp-red-addressees-only"]));
        t.add(&record(Operation::Denial, 2, "", &["tlp-red-addressees-only"]));
        t.add(&record(Operation::Denial, 3, "RESOURCE_EXHAUSTED: limits.rate_per_node (5/s, burst 10)", &[]));
        t.add(&record(Operation::Disclosure, 4, "", &["national-police-full"]));
        assert_eq!(
            t.denials(),
            vec![("tlp-red-addressees-only".to_owned(), 2), ("limits.rate_per_node".to_owned(), 1)]
        );
    }

    #[test]
    fn operations_fall_into_buckets_over_the_logs_span() {
        let mut t = Tally::default();
        for ms in [0, 10, 999, 1000] {
            t.add(&record(Operation::Collection, 1_000_000 + ms, "", &[]));
        }
        t.add(&record(Operation::LogRead, 1_001_000, "", &[]));
        let s = t.by_operation(2);
        assert_eq!(s.columns.len(), 3);
        let collection = &s.rows.iter().find(|r| r.0 == "collection").unwrap().1;
        assert_eq!(collection, &vec![2, 1, 1]);
        assert_eq!(collection.iter().sum::<u64>(), 4);
        let svg = stacked_columns(&s, "t");
        assert!(svg.contains("collection: 2 at"), "{svg}");
        assert!(Tally::default().by_operation(24).columns.is_empty());
    }

    #[test]
    fn labels_are_escaped() {
        let svg = bars(&[("<script>".into(), 1)], "x");
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
