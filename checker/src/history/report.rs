//! Self-contained HTML reports: one timeline per key, operations drawn as bars per process.
//!
//! Bars run from invocation to completion and are coloured by outcome (ok, fail, info; an
//! `info` bar runs to the end of the timeline because its effect may come at any later time).
//! Operations a checker blamed are outlined, and for linearizability the longest partial
//! linearization is numbered on the bars and listed below the timeline. The file uses inline
//! SVG and CSS only, so it can be attached to a CI run and opened anywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use super::{History, Outcome, Pair, Value, Verdict};

/// Most keys drawn; keys with findings come first.
pub const KEYS_DRAWN_MAX: usize = 40;
/// Most operations drawn per key; a window around the first finding is kept.
pub const OPS_PER_KEY_DRAWN_MAX: usize = 400;

const WIDTH_PX: f64 = 1100.0;
const LABEL_PX: f64 = 60.0;
const ROW_PX: f64 = 20.0;

/// Render a report for `history` judged by `verdict`.
pub fn render(history: &History, verdict: &Verdict, title: &str) -> String {
    let pairs = history.pairs().unwrap_or_default();
    let highlight: BTreeSet<usize> = verdict.highlight.iter().copied().collect();
    let linearized: HashMap<&Value, &Vec<usize>> =
        verdict.linearizations.iter().map(|(k, ops)| (k, ops)).collect();
    let mut by_key: BTreeMap<&Value, Vec<&Pair>> = BTreeMap::new();
    for p in &pairs {
        by_key.entry(&p.key).or_default().push(p);
    }
    let flagged = |key: &Value, ops: &[&Pair]| {
        linearized.contains_key(key)
            || ops.iter().any(|p| {
                highlight.contains(&p.invoke_pos)
                    || p.complete_pos.is_some_and(|c| highlight.contains(&c))
            })
    };
    let mut keys: Vec<(&Value, Vec<&Pair>)> = by_key.into_iter().collect();
    keys.sort_by_key(|(k, ops)| !flagged(k, ops));
    let total_keys = keys.len();

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>\n",
        escape(title),
        STYLE
    );
    let _ = write!(
        html,
        "<h1>{}</h1>\n<p class=\"verdict {}\">{}</p>\n<pre>{}</pre>\n",
        escape(title),
        verdict.validity.name(),
        verdict.validity.name(),
        escape(&verdict.explanation)
    );
    html.push_str(LEGEND);
    for (key, ops) in keys.iter().take(KEYS_DRAWN_MAX) {
        let order: Option<&Vec<usize>> = linearized.get(key).copied();
        draw_key(&mut html, history, key, ops, &highlight, order);
    }
    if total_keys > KEYS_DRAWN_MAX {
        let _ = writeln!(html, "<p>{} more keys not drawn.</p>", total_keys - KEYS_DRAWN_MAX);
    }
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
pre{background:#f6f6f6;padding:.8em;white-space:pre-wrap}\
.verdict{font-size:1.4em;font-weight:bold}.valid{color:#1a7f37}.invalid{color:#c62828}.unknown{color:#b26a00}\
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:3px}\
.ok{fill:#8bd18b;background:#8bd18b}.fail{fill:#f19a9a;background:#f19a9a}.info{fill:#ffd27f;background:#ffd27f}\
rect.blamed{stroke:#000;stroke-width:3}text{font-size:11px;font-family:monospace}\
h2{font-size:1.1em;margin-top:1.6em}ol{font-family:monospace;font-size:12px}";

const LEGEND: &str = "<p class=\"legend\"><span class=\"ok\">ok</span><span class=\"fail\">fail</span>\
<span class=\"info\">info (may take effect later)</span><span style=\"border:3px solid #000\">blamed</span> \
#n = position in the longest partial linearization</p>\n";

fn draw_key(
    html: &mut String,
    history: &History,
    key: &Value,
    ops: &[&Pair],
    highlight: &BTreeSet<usize>,
    order: Option<&Vec<usize>>,
) {
    let shown = window(ops, highlight);
    let rank: HashMap<usize, usize> = order
        .map(|o| o.iter().enumerate().map(|(i, &pos)| (pos, i + 1)).collect())
        .unwrap_or_default();
    let processes: BTreeSet<i64> = shown.iter().map(|p| p.process).collect();
    let row: HashMap<i64, usize> = processes.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    let t0 = shown.iter().map(|p| p.invoke_time_ns).min().unwrap_or(0);
    let t1 = shown
        .iter()
        .map(|p| p.complete_time_ns.unwrap_or(p.invoke_time_ns))
        .max()
        .unwrap_or(0)
        .max(t0 + 1);
    let span = (t1 - t0) as f64;
    let plot = WIDTH_PX - LABEL_PX - 10.0;
    let x = |t: i64| LABEL_PX + (t - t0) as f64 / span * plot;
    let height = ROW_PX * processes.len() as f64 + 24.0;
    let _ = writeln!(
        html,
        "<h2>key {} ({} operations{})</h2>",
        escape(&key.to_string()),
        ops.len(),
        if shown.len() < ops.len() { format!(", {} drawn", shown.len()) } else { String::new() }
    );
    let _ = writeln!(
        html,
        "<svg width=\"{WIDTH_PX}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (&p, &r) in &row {
        let y = 16.0 + r as f64 * ROW_PX;
        let _ = writeln!(html, "<text x=\"2\" y=\"{:.1}\">p{}</text>", y + 13.0, p);
    }
    for p in &shown {
        let Some(&r) = row.get(&p.process) else { continue };
        let y = 16.0 + r as f64 * ROW_PX;
        let start = x(p.invoke_time_ns);
        let end = match (p.outcome, p.complete_time_ns) {
            (Outcome::Info, _) | (_, None) => LABEL_PX + plot,
            (_, Some(t)) => x(t),
        };
        let width = (end - start).max(2.0);
        let blamed = highlight.contains(&p.invoke_pos)
            || p.complete_pos.is_some_and(|c| highlight.contains(&c));
        let class = format!("{}{}", p.outcome.name(), if blamed { " blamed" } else { "" });
        let tip = format!("{} [line {}]", p.describe(), history.line(p.invoke_pos));
        let _ = writeln!(
            html,
            "<rect class=\"{class}\" x=\"{start:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{}\" rx=\"2\"><title>{}</title></rect>",
            ROW_PX - 4.0,
            escape(&tip)
        );
        let mut label = format!("{} {}", p.f, short(p));
        if let Some(n) = rank.get(&p.invoke_pos) {
            label = format!("#{n} {label}");
        }
        if width > 7.0 * label.len() as f64 {
            let _ = writeln!(
                html,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                start + 3.0,
                y + 12.0,
                escape(&label)
            );
        } else if let Some(n) = rank.get(&p.invoke_pos) {
            let _ = writeln!(html, "<text x=\"{:.1}\" y=\"{:.1}\">#{n}</text>", start, y - 1.0);
        }
    }
    let _ = writeln!(html, "</svg>");
    if let Some(order) = order {
        let by_pos: HashMap<usize, &Pair> = ops.iter().map(|p| (p.invoke_pos, *p)).collect();
        let _ = writeln!(
            html,
            "<p>Longest partial linearization ({} operations):</p><ol>",
            order.len()
        );
        for pos in order {
            if let Some(p) = by_pos.get(pos) {
                let _ = writeln!(
                    html,
                    "<li>{} [line {}]</li>",
                    escape(&p.describe()),
                    history.line(p.invoke_pos)
                );
            }
        }
        let _ = writeln!(html, "</ol>");
    }
}

/// The operations to draw: all of them, or a window around the first blamed one.
fn window<'a>(ops: &[&'a Pair], highlight: &BTreeSet<usize>) -> Vec<&'a Pair> {
    if ops.len() <= OPS_PER_KEY_DRAWN_MAX {
        return ops.to_vec();
    }
    let focus = ops.iter().position(|p| highlight.contains(&p.invoke_pos)).unwrap_or(0);
    let start =
        focus.saturating_sub(OPS_PER_KEY_DRAWN_MAX / 2).min(ops.len() - OPS_PER_KEY_DRAWN_MAX);
    ops.get(start..start + OPS_PER_KEY_DRAWN_MAX).unwrap_or_default().to_vec()
}

fn short(p: &Pair) -> String {
    let text = match p.outcome {
        Outcome::Ok => p.effective_value().to_string(),
        _ => p.invoke_value.to_string(),
    };
    if text.chars().count() > 24 {
        format!("{}…", text.chars().take(23).collect::<String>())
    } else {
        text
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::linear::{check, Budget, Model};
    use crate::history::{Op, OpType};

    #[test]
    fn report_marks_the_failing_operation_and_linearization() {
        let ops = vec![
            Op::new(0, OpType::Invoke, "write", Value::Int(1), 0, 0),
            Op::new(0, OpType::Ok, "write", Value::Int(1), 10, 1),
            Op::new(1, OpType::Invoke, "read", Value::Nil, 20, 2),
            Op::new(1, OpType::Ok, "read", Value::Str("<2>".into()), 30, 3),
        ];
        let history = History::new(ops);
        let result = check(&history, Model::Register, Budget::default()).expect("well formed");
        let html = render(&history, &result.verdict(&history), "t & t");
        assert!(html.contains("class=\"fail blamed\"") || html.contains("class=\"ok blamed\""));
        assert!(html.contains("Longest partial linearization (1 operations)"));
        assert!(html.contains("&lt;2&gt;"));
        assert!(html.contains("t &amp; t"));
        assert!(!html.contains("<script"));
    }
}
