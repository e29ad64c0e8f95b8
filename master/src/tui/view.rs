//! Drawing a [`Model`] on a ratatui [`Frame`]: a title line, the run's figures, the view tabs,
//! the current view, and a footer with the keys. Reads the model only; never changes it, never
//! talks to the master. Laid out to stay readable at 80 × 24 and to use more room when given.
//!
//! The kind views (LLM, priority, downloads) read only generic snapshot data (metric and
//! counter names), so they work for any driver that records those names.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Sparkline, Table, Tabs,
};
use stampede_scenarios::Kind;
use stampede_scenarios::spec::{Family, MetricSpec, Role};

use super::model::{Model, SLO_CLASSES, View, priority_cells};
use crate::snapshot::{NameView, RunView, WorkerView};
use crate::state::WorkerState;

/// The keys, as the footer shows them.
const KEYS: &[(&str, &str)] = &[
    ("s", "start"),
    ("x", "stop"),
    ("+/-", "load"),
    ("Tab", "view"),
    ("?", "help"),
    ("q", "quit"),
];

/// Draw the whole screen.
pub fn view(model: &Model, frame: &mut Frame) {
    let [title, figures, tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(title_line(model), title);
    frame.render_widget(figures_line(model), figures);
    frame.render_widget(tab_line(model), tabs);
    match model.view {
        View::Overview => overview(model, frame, body),
        View::Requests => requests(model, frame, body),
        View::Workers => workers(model, frame, body),
        View::Charts => charts(model, frame, body),
        View::Failures => failures(model, frame, body),
        View::Llm => llm(model, frame, body),
        View::Priority => priority(model, frame, body),
        View::Downloads => downloads(model, frame, body),
    }
    frame.render_widget(footer_line(model), footer);
    if model.help {
        help(model, frame);
    }
}

fn state_style(state: &str) -> Style {
    // The run's and the workers' states share their words (`running`, `lost`, ...).
    match state {
        "running" => Style::new().fg(Color::Green).bold(),
        "assigning" | "assigned" | "stopping" => Style::new().fg(Color::Yellow).bold(),
        "lost" => Style::new().fg(Color::Red).bold(),
        _ => Style::new().fg(Color::Cyan).bold(),
    }
}

fn title_line(model: &Model) -> Paragraph<'static> {
    let live = model
        .snapshot
        .workers
        .iter()
        .filter(|w| w.state != WorkerState::Lost)
        .count();
    let mut spans = vec![Span::styled(" STAMPEDE ", Style::new().bold().reversed())];
    match model.run() {
        Some(r) => {
            spans.push(Span::raw(" "));
            spans.push(Span::styled(
                r.state.to_string(),
                state_style(r.state.as_str()),
            ));
            spans.push(Span::raw(format!(
                " {} / {} · {live} worker(s) · {} ({}) · run {}",
                secs(r.elapsed_s),
                if r.duration_s > 0.0 {
                    secs(r.duration_s)
                } else {
                    "until stopped".into()
                },
                r.scenario,
                r.kind,
                r.id
            )));
        }
        None => spans.push(Span::raw(format!(
            " waiting · {live} worker(s) · workers join at {}",
            model.join_hint
        ))),
    }
    Paragraph::new(Line::from(spans))
}

fn figures_line(model: &Model) -> Paragraph<'static> {
    let line = match model.run() {
        Some(r) => {
            let now = if r.kind == Kind::Download || r.target_rate <= 0.0 {
                format!("{} users", r.users)
            } else {
                format!("{} req/s target", rate(r.target_rate))
            };
            let fail_style = if r.total.failures > 0 {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(
                    format!(" {} req/s", rate(super::model::rps(r, &r.total))),
                    Style::new().bold(),
                ),
                Span::raw(" · "),
                Span::styled(format!("{} fails", count(r.total.failures)), fail_style),
                Span::raw(format!(
                    " · {now} · load ×{:.2} of {}",
                    model.scale(),
                    r.load
                )),
            ])
        }
        None => match &model.scenario {
            Some(s) => Line::from(format!(" s starts {s}")),
            None => Line::from(" no scenario: runs start over the API (POST /api/runs)"),
        },
    };
    Paragraph::new(line)
}

fn tab_line(model: &Model) -> Tabs<'static> {
    let views = model.views();
    let titles: Vec<String> = views
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {}", i + 1, v.title()))
        .collect();
    let at = views.iter().position(|v| *v == model.view).unwrap_or(0);
    Tabs::new(titles)
        .select(at)
        .highlight_style(Style::new().bold().reversed())
        .divider("│")
        .padding(" ", " ")
}

fn footer_line(model: &Model) -> Paragraph<'static> {
    let mut spans = Vec::new();
    for (k, what) in KEYS {
        spans.push(Span::styled(
            format!(" {k}"),
            Style::new().bold().fg(Color::Cyan),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    if let Some(s) = &model.status {
        let style = if s.error {
            Style::new().fg(Color::Red)
        } else {
            Style::new().fg(Color::Yellow)
        };
        spans.push(Span::raw("│ "));
        spans.push(Span::styled(s.text.clone(), style));
    }
    Paragraph::new(Line::from(spans))
}

fn overview(model: &Model, frame: &mut Frame, area: Rect) {
    let rows = model.snapshot.workers.len().clamp(1, 6) as u16;
    match model.run() {
        None => {
            let [w, hint] =
                Layout::vertical([Constraint::Length(rows + 3), Constraint::Fill(1)]).areas(area);
            workers_table(model, frame, w, 0);
            frame.render_widget(waiting(model), hint);
        }
        Some(run) => {
            let [w, r, s] = Layout::vertical([
                Constraint::Length(rows + 3),
                Constraint::Fill(1),
                Constraint::Length(4),
            ])
            .areas(area);
            workers_table(model, frame, w, 0);
            requests_table(run, frame, r, model.scroll);
            rps_sparkline(model, frame, s);
        }
    }
}

fn waiting(model: &Model) -> Paragraph<'static> {
    let live = model
        .snapshot
        .workers
        .iter()
        .filter(|w| w.state != WorkerState::Lost)
        .count();
    let mut lines = vec![Line::from(format!(
        "{live} worker(s) joined. Workers join with:"
    ))];
    lines.push(Line::from(format!(
        "  stampede worker --master {} --token TOKEN",
        model.join_hint
    )));
    lines.push(Line::from(""));
    lines.push(match &model.scenario {
        Some(s) => Line::from(vec![
            Span::raw("Press "),
            Span::styled("s", Style::new().bold().fg(Color::Cyan)),
            Span::raw(format!(" to start: {s}")),
        ]),
        None => Line::from("No scenario: start runs with POST /api/runs."),
    });
    Paragraph::new(lines).block(Block::bordered().title(" Waiting "))
}

fn requests(model: &Model, frame: &mut Frame, area: Rect) {
    match model.run() {
        Some(run) => requests_table(run, frame, area, model.scroll),
        None => frame.render_widget(no_run(), area),
    }
}

fn workers(model: &Model, frame: &mut Frame, area: Rect) {
    workers_table(model, frame, area, model.scroll);
}

fn no_run() -> Paragraph<'static> {
    Paragraph::new("No run yet.").block(Block::bordered())
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).right_aligned())
}

fn workers_table(model: &Model, frame: &mut Frame, area: Rect, scroll: usize) {
    let header = Row::new(
        [
            "id", "name", "address", "state", "share", "req/s", "requests", "seen",
        ]
        .map(|h| Cell::from(Line::from(h))),
    )
    .style(Style::new().bold().underlined());
    let rows: Vec<Row> = model
        .snapshot
        .workers
        .iter()
        .skip(scroll)
        .map(|w| worker_row(w))
        .collect();
    let title = format!(" Workers ({}) ", model.snapshot.workers.len());
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Fill(2),
            Constraint::Fill(3),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(5),
        ],
    )
    .header(header)
    .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

fn worker_row(w: &WorkerView) -> Row<'static> {
    let lost = w.state == WorkerState::Lost;
    let state = if lost {
        "✗ lost".to_string()
    } else {
        w.state.to_string()
    };
    let row = Row::new(vec![
        right(w.id.to_string()),
        Cell::from(w.name.clone()),
        Cell::from(w.addr.clone()),
        Cell::from(Span::styled(state, state_style(w.state.as_str()))),
        right(format!("{:.0}%", w.share * 100.0)),
        right(if lost { "-".into() } else { rate(w.rps) }),
        right(count(w.requests)),
        right(if lost {
            "-".into()
        } else if w.last_seen_s < 10.0 {
            format!("{:.1}s", w.last_seen_s)
        } else {
            format!("{:.0}s", w.last_seen_s)
        }),
    ]);
    if lost {
        row.style(Style::new().fg(Color::Red))
    } else {
        row
    }
}

fn requests_table(run: &RunView, frame: &mut Frame, area: Rect, scroll: usize) {
    // Connection columns only for drivers that time connections and only those measured
    // (TLS only on `https://`).
    let has = |metric: &str| {
        run.names
            .iter()
            .chain([&run.total])
            .any(|n| n.metrics.contains_key(metric))
    };
    let connection_specs: Vec<&MetricSpec> = run
        .specs
        .metrics
        .iter()
        .filter(|s| s.family == Family::Connection && s.tui.is_some())
        .collect();
    let columns: Vec<(&str, &str)> = connection_specs
        .iter()
        .filter(|s| has(s.name))
        .filter_map(|s| Some((s.tui?, s.name)))
        .collect();
    let mut titles = vec![
        "name", "count", "fails", "req/s", "p50", "p90", "p99", "max",
    ];
    let mut widths = vec![
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    for (title, _) in &columns {
        titles.push(title);
        widths.push(Constraint::Length(6));
    }
    let header = Row::new(titles.into_iter().map(|h| {
        if h == "name" {
            Cell::from(h)
        } else {
            right(h.to_string())
        }
    }))
    .style(Style::new().bold().underlined());
    let p50 = |n: &NameView, metric: &str| {
        n.metrics
            .get(metric)
            .filter(|m| m.count > 0)
            .map_or("-".to_string(), |m| ms(m.p50_ms))
    };
    let row = |n: &NameView| {
        let mut cells = vec![
            Cell::from(n.name.clone()),
            right(count(n.requests)),
            right(count(n.failures)).style(if n.failures > 0 {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            }),
            right(rate(super::model::rps(run, n))),
            right(ms(n.p50_ms)),
            right(ms(n.p90_ms)),
            right(ms(n.p99_ms)),
            right(ms(n.max_ms)),
        ];
        for (_, metric) in &columns {
            cells.push(right(p50(n, metric)));
        }
        Row::new(cells)
    };
    let rows: Vec<Row> = run.names.iter().skip(scroll).map(row).collect();
    let title = if columns.is_empty() {
        " Requests (latency in ms, whole run) ".to_string()
    } else {
        let labels: Vec<&str> = connection_specs.iter().filter_map(|s| s.tui).collect();
        format!(
            " Requests (latency in ms, whole run; {}: p50 of new connections) ",
            labels.join(", ")
        )
    };
    let mut block = Block::bordered().title(title);
    if let Some(line) = super::model::connections_line(&run.specs, &run.total) {
        block = block.title_bottom(format!(" {line} "));
    }
    let table = Table::new(rows, widths)
        .header(header)
        .footer(row(&run.total).style(Style::new().bold()))
        .block(block);
    frame.render_widget(table, area);
}

fn rps_sparkline(model: &Model, frame: &mut Frame, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let points: Vec<u64> = model
        .history
        .iter()
        .rev()
        .take(width)
        .rev()
        .map(|s| s.rps.round() as u64)
        .collect();
    let peak = points.iter().copied().max().unwrap_or(0);
    let title = format!(" req/s, last {} s (peak {peak}) ", points.len());
    frame.render_widget(
        Sparkline::default()
            .data(points)
            .style(Style::new().fg(Color::Green))
            .block(Block::bordered().title(title)),
        area,
    );
}

/// A chart's title naming its lines in their colours (a legend that takes no room).
fn legend<const N: usize>(what: &'static str, lines: [(&'static str, Color); N]) -> Line<'static> {
    let mut spans = vec![Span::raw(format!(" {what}"))];
    for (name, color) in lines {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("━ {name}"),
            Style::new().fg(color).bold(),
        ));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// The y axis for values up to `max`: from 0, with three labels.
fn y_axis(max: f64) -> Axis<'static> {
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    Axis::default()
        .bounds([0.0, top])
        .labels(["0".to_string(), short(top / 2.0), short(top)])
        .style(Style::new().fg(Color::Gray))
}

fn x_axis(model: &Model) -> Axis<'static> {
    let (lo, hi) = match (model.history.front(), model.history.back()) {
        (Some(a), Some(b)) => (a.t.floor(), b.t.ceil().max(a.t.floor() + 10.0)),
        _ => (0.0, 10.0),
    };
    Axis::default()
        .bounds([lo, hi])
        .labels([secs(lo), secs((lo + hi) / 2.0), secs(hi)])
        .style(Style::new().fg(Color::Gray))
}

fn charts(model: &Model, frame: &mut Frame, area: Rect) {
    let [top, bottom] = Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(area);
    let rps: Vec<(f64, f64)> = model.history.iter().map(|s| (s.t, s.rps)).collect();
    let fps: Vec<(f64, f64)> = model.history.iter().map(|s| (s.t, s.fps)).collect();
    let p50: Vec<(f64, f64)> = model.history.iter().map(|s| (s.t, s.p50_ms)).collect();
    let p99: Vec<(f64, f64)> = model.history.iter().map(|s| (s.t, s.p99_ms)).collect();
    let max = |v: &[(f64, f64)]| v.iter().map(|p| p.1).fold(0.0, f64::max);
    let line = |name: &'static str, data, color| {
        Dataset::default()
            .name(name)
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(color))
            .data(data)
    };
    let throughput = Chart::new(vec![
        line("req/s", &rps, Color::Green),
        line("fails/s", &fps, Color::Red),
    ])
    .block(Block::bordered().title(legend(
        "Throughput per second:",
        [("req/s", Color::Green), ("fails/s", Color::Red)],
    )))
    .legend_position(None)
    .x_axis(x_axis(model))
    .y_axis(y_axis(max(&rps).max(max(&fps))));
    let latency = Chart::new(vec![
        line("p50", &p50, Color::Cyan),
        line("p99", &p99, Color::Magenta),
    ])
    .block(Block::bordered().title(legend(
        "Latency of each second, ms:",
        [("p50", Color::Cyan), ("p99", Color::Magenta)],
    )))
    .legend_position(None)
    .x_axis(x_axis(model))
    .y_axis(y_axis(max(&p99).max(max(&p50))));
    frame.render_widget(throughput, top);
    frame.render_widget(latency, bottom);
}

fn failures(model: &Model, frame: &mut Frame, area: Rect) {
    let events = model.run().map_or(0, |r| r.events.len()) as u16;
    let [f, e, l] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(events.clamp(1, 4) + 2),
        Constraint::Length(7),
    ])
    .areas(area);
    let rows: Vec<Row> = model
        .run()
        .map(|r| r.failures.as_slice())
        .unwrap_or_default()
        .iter()
        .skip(model.scroll)
        .map(|f| {
            Row::new(vec![
                Cell::from(f.name.clone()),
                Cell::from(Span::styled(f.error.clone(), Style::new().fg(Color::Red))),
                right(count(f.occurrences)),
            ])
        })
        .collect();
    let total: u64 = model.run().map_or(0, |r| r.total.failures);
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Fill(2),
            Constraint::Length(11),
        ],
    )
    .header(
        Row::new([
            Cell::from("name"),
            Cell::from("error"),
            right("occurrences".into()),
        ])
        .style(Style::new().bold().underlined()),
    )
    .block(Block::bordered().title(format!(" Failures ({}) ", count(total))));
    frame.render_widget(table, f);
    let events: Vec<Line> = model
        .run()
        .map(|r| r.events.as_slice())
        .unwrap_or_default()
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|e| Line::from(e.clone()))
        .collect();
    frame.render_widget(
        Paragraph::new(events).block(Block::bordered().title(" Events ")),
        e,
    );
    let shown = l.height.saturating_sub(2) as usize;
    let logs: Vec<Line> = model
        .logs
        .iter()
        .rev()
        .take(shown)
        .rev()
        .map(|s| Line::from(log_line(s)))
        .collect();
    frame.render_widget(
        Paragraph::new(logs).block(Block::bordered().title(" Log ")),
        l,
    );
}

fn metric(n: &NameView, name: &str, pick: fn(&crate::snapshot::MetricView) -> f64) -> String {
    n.metrics
        .get(name)
        .filter(|m| m.count > 0)
        .map_or_else(|| "-".to_string(), |m| ms(pick(m)))
}

fn llm(model: &Model, frame: &mut Frame, area: Rect) {
    let Some(run) = model.run() else {
        frame.render_widget(no_run(), area);
        return;
    };
    let [summary, table] =
        Layout::vertical([Constraint::Length(5), Constraint::Fill(1)]).areas(area);
    let rate_of = |name: &str, counter: &str| {
        model
            .rates
            .get(name)
            .and_then(|r| r.get(counter))
            .copied()
            .unwrap_or(0.0)
    };
    let t = &run.total;
    // The driver's names for the figures this view shows ("" where it records none).
    let name = |role| run.specs.name_of(role).unwrap_or_default();
    let (ttft, tpot, itl) = (
        name(Role::TimeToFirstToken),
        name(Role::TimePerOutputToken),
        name(Role::InterTokenLatency),
    );
    let (input, output) = (name(Role::InputTokens), name(Role::OutputTokens));
    let counter = |c: &str| t.counters.get(c).copied().unwrap_or(0);
    let good = match t.counters.get(name(Role::GoodRequests)) {
        Some(g) if t.requests > 0 => format!("{:.1}%", *g as f64 * 100.0 / t.requests as f64),
        _ => "-".into(),
    };
    // p50 and p99 of each LLM timing that has a TUI label: TTFT, TPOT, ITL.
    let timings: Vec<String> = run
        .specs
        .metrics
        .iter()
        .filter(|s| s.family == Family::LlmTiming)
        .filter_map(|s| {
            Some(format!(
                "{} p50 {} p99 {} ms",
                s.tui?,
                metric(t, s.name, |m| m.p50_ms),
                metric(t, s.name, |m| m.p99_ms)
            ))
        })
        .collect();
    let lines = vec![
        Line::from(vec![
            Span::styled(
                format!("output {} tok/s", rate(rate_of(&t.name, output))),
                Style::new().bold().fg(Color::Green),
            ),
            Span::raw(format!(
                " · input {} tok/s · goodput {good}",
                rate(rate_of(&t.name, input))
            )),
        ]),
        Line::from(timings.join(" · ")),
        Line::from(format!(
            "tokens so far: {} in, {} out",
            count(counter(input)),
            count(counter(output)),
        )),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" LLM ")),
        summary,
    );
    let header = Row::new(
        [
            "name",
            "TTFT p50",
            "p99",
            "TPOT p50",
            "p99",
            "ITL p50",
            "out tok/s",
            "out tok",
        ]
        .map(|h| {
            if h == "name" {
                Cell::from(h)
            } else {
                right(h.to_string())
            }
        }),
    )
    .style(Style::new().bold().underlined());
    let row = |n: &NameView| {
        Row::new(vec![
            Cell::from(n.name.clone()),
            right(metric(n, ttft, |m| m.p50_ms)),
            right(metric(n, ttft, |m| m.p99_ms)),
            right(metric(n, tpot, |m| m.p50_ms)),
            right(metric(n, tpot, |m| m.p99_ms)),
            right(metric(n, itl, |m| m.p50_ms)),
            right(rate(rate_of(&n.name, output))),
            right(count(n.counters.get(output).copied().unwrap_or(0))),
        ])
    };
    let rows: Vec<Row> = run.names.iter().skip(model.scroll).map(row).collect();
    let table_widget = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .footer(row(t).style(Style::new().bold()))
    .block(Block::bordered().title(" Per request name (ms) "));
    frame.render_widget(table_widget, table);
}

fn attainment_style(pct: f64) -> Style {
    if pct >= 99.0 {
        Style::new().fg(Color::Green).bold()
    } else if pct >= 90.0 {
        Style::new().fg(Color::Yellow).bold()
    } else {
        Style::new().fg(Color::Red).bold()
    }
}

fn priority(model: &Model, frame: &mut Frame, area: Rect) {
    let Some(run) = model.run() else {
        frame.render_widget(no_run(), area);
        return;
    };
    let cells = priority_cells(run);
    let [caption, grid] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(" SLO attainment (slo_met / requests) by tier and SLO class"),
        caption,
    );
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(4),
    ])
    .split(grid);
    let columns = |r: Rect| {
        Layout::horizontal([
            Constraint::Length(7),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Fill(1),
        ])
        .split(r)
    };
    let head = columns(rows[0]);
    for (c, (class, slo)) in SLO_CLASSES.iter().enumerate() {
        frame.render_widget(
            Paragraph::new(Line::from(format!("{class} ≤ {slo}")).centered()).bold(),
            head[c + 1],
        );
    }
    for tier in 1..=3 {
        let cols = columns(rows[tier]);
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(""),
                Line::from(format!("tier {tier}")).bold(),
            ]),
            cols[0],
        );
        for class in 0..3 {
            let cell = cells.iter().find(|c| c.tier == tier && c.class == class);
            let text: Text = match cell {
                Some(c) if c.requests > 0 => {
                    let pct = c.slo_met.map(|m| m as f64 * 100.0 / c.requests as f64);
                    Text::from(vec![
                        match pct {
                            Some(p) => {
                                Line::styled(format!("{p:.1}%"), attainment_style(p)).centered()
                            }
                            None => Line::from("n/a").centered(),
                        },
                        Line::from(format!("n {} · p99 {} ms", count(c.requests), ms(c.p99_ms)))
                            .centered(),
                    ])
                }
                _ => Text::from(Line::from("-").centered()),
            };
            frame.render_widget(
                Paragraph::new(text).block(Block::bordered()),
                cols[class + 1],
            );
        }
    }
}

fn downloads(model: &Model, frame: &mut Frame, area: Rect) {
    let Some(run) = model.run() else {
        frame.render_widget(no_run(), area);
        return;
    };
    let t = &run.total;
    let ttfb = run.specs.name_of(Role::TimeToFirstByte).unwrap_or_default();
    let [summary, chart] =
        Layout::vertical([Constraint::Length(6), Constraint::Fill(1)]).areas(area);
    let bps = model
        .rates
        .get(&t.name)
        .and_then(|r| r.get("bytes"))
        .copied()
        .unwrap_or(0.0);
    // A `once` download scenario has each client fetch one file: downloads done are clients
    // done. A driver counting `clients_done` itself (repeat mode) is shown as it says.
    let clients_done = match t.counters.get("clients_done") {
        Some(c) => format!("clients done {} · ", count(*c)),
        None => String::new(),
    };
    // `client_throughput` is recorded in kB/s; metric views divide by 1000: MB/s.
    let per_client = |pick: fn(&crate::snapshot::MetricView) -> f64| {
        t.metrics
            .get(
                run.specs
                    .name_of(Role::ClientThroughput)
                    .unwrap_or_default(),
            )
            .filter(|m| m.count > 0)
            .map_or_else(|| "-".to_string(), |m| format!("{:.1}", pick(m)))
    };
    let lines = vec![
        Line::from(vec![
            Span::styled(
                format!("{}/s", bytes(bps)),
                Style::new().bold().fg(Color::Green),
            ),
            Span::raw(format!(" · {} so far", bytes(t.bytes as f64))),
        ]),
        Line::from(format!(
            "{clients_done}downloads done {} (failed {}) · clients downloading now {}",
            count(t.requests),
            count(t.failures),
            run.users
        )),
        Line::from(format!(
            "TTFB p50 {} p99 {} ms · whole download p50 {} p99 {} max {} ms",
            metric(t, ttfb, |m| m.p50_ms),
            metric(t, ttfb, |m| m.p99_ms),
            ms(t.p50_ms),
            ms(t.p99_ms),
            ms(t.max_ms)
        )),
        Line::from(format!(
            "per client: p50 {} MB/s, mean {} MB/s",
            per_client(|m| m.p50_ms),
            per_client(|m| m.mean_ms)
        )),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Downloads ")),
        summary,
    );
    let width = chart.width.saturating_sub(2) as usize;
    let points: Vec<u64> = model
        .history
        .iter()
        .rev()
        .take(width)
        .rev()
        .map(|s| s.bytes_per_s.round() as u64)
        .collect();
    let peak = points.iter().copied().max().unwrap_or(0);
    let title = format!(
        " bytes/s, last {} s (peak {}/s) ",
        points.len(),
        bytes(peak as f64)
    );
    frame.render_widget(
        Sparkline::default()
            .data(points)
            .style(Style::new().fg(Color::Green))
            .block(Block::bordered().title(title)),
        chart,
    );
}

fn help(model: &Model, frame: &mut Frame) {
    let mut lines = vec![
        Line::from("s      start the scenario on the joined workers"),
        Line::from("x      stop the run (results are written)"),
        Line::from("+ / -  raise / lower users or rate by 10 %"),
        Line::from("Tab    next view (Shift-Tab: previous, 1-8: jump)"),
        Line::from("↑ / ↓  scroll the view's table"),
        Line::from("?      this help (any key closes it)"),
        Line::from("q      stop the run, write results, quit"),
        Line::from(""),
    ];
    let views: Vec<&str> = model.views().iter().map(|v| v.title()).collect();
    lines.push(Line::from(format!("views: {}", views.join(", "))));
    let area = frame
        .area()
        .centered(Constraint::Max(60), Constraint::Max(lines.len() as u16 + 2));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys ").bold()),
        area,
    );
}

/// A log line with its RFC 3339 timestamp cut to the time of day, to the second
/// (`2026-12-01T13:37:52.311298Z  INFO x` → `13:37:52  INFO x`).
fn log_line(line: &str) -> String {
    let b = line.as_bytes();
    match line.find('Z') {
        Some(z) if b.len() > 19 && b[10] == b'T' && b[4] == b'-' && z < 32 => {
            format!("{}{}", &line[11..19], &line[z + 1..])
        }
        _ => line.to_string(),
    }
}

/// `12s`, `2m05s`, `1h02m`.
fn secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// Milliseconds with about three significant digits.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A rate: one decimal below 100, whole above.
fn rate(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A count, exact below ten million.
fn count(n: u64) -> String {
    if n < 10_000_000 {
        n.to_string()
    } else {
        format!("{:.1}M", n as f64 / 1e6)
    }
}

/// An axis label: whole numbers, `k` from ten thousand.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Bytes in SI units.
fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    use super::*;
    use crate::snapshot::Snapshot;
    use crate::tui::model::{Key, Msg, Status};
    use crate::tui::testdata;

    /// Draw `model` on a `w` × `h` test terminal.
    fn draw(model: &Model, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| view(model, f)).unwrap();
        t.backend().buffer().clone()
    }

    /// The buffer's rows as text, each closed by `|` so trailing blanks show.
    fn text(buf: &Buffer) -> String {
        let area = buf.area;
        (0..area.height)
            .map(|y| {
                let row: String = (0..area.width).map(|x| buf[(x, y)].symbol()).collect();
                format!("{row}|\n")
            })
            .collect()
    }

    /// Compare the screen with `screens/NAME.txt`; `STAMPEDE_BLESS=1` rewrites the file (then
    /// review it).
    fn check(name: &str, model: &Model) {
        let got = text(&draw(model, 80, 24));
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/tui/screens")
            .join(format!("{name}.txt"));
        if std::env::var_os("STAMPEDE_BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (STAMPEDE_BLESS=1 writes it)", path.display()));
        if want != got {
            panic!(
                "screen {name} differs from {}\n--- want\n{want}--- got\n{got}",
                path.display()
            );
        }
    }

    fn model_of(s: Snapshot) -> Model {
        let mut m = Model::new(
            "127.0.0.1:7400".into(),
            Some("checkout (closed: 10 users for 30s)".into()),
        );
        m.update(Msg::Snapshot(Arc::new(s)));
        m
    }

    /// `snapshot` as it would have been published over `seconds` intervals, with figures that
    /// vary from second to second, so the charts and rates have a history.
    fn with_history(snapshot: Snapshot, seconds: u64) -> Model {
        let mut m = model_of(Snapshot::default());
        for i in 1..=seconds {
            let mut s = snapshot.clone();
            let run = s.run.as_mut().unwrap();
            run.intervals = i;
            run.elapsed_s = i as f64;
            let wave = (i % 7) as f64;
            let t = &mut run.total;
            t.rps = 400.0 + wave * 20.0;
            t.fps = (i % 5) as f64;
            t.interval_p50_ms = 1.0 + (i % 3) as f64;
            t.interval_p99_ms = 5.0 + (i % 4) as f64 * 2.0;
            t.bytes = i * i * 1_000_000;
            for n in run.names.iter_mut().chain(std::iter::once(&mut run.total)) {
                for (k, v) in n.counters.iter_mut() {
                    if k.ends_with("tokens") {
                        *v = *v * i / seconds;
                    }
                }
            }
            m.update(Msg::Snapshot(Arc::new(s)));
        }
        m
    }

    fn on(mut m: Model, v: View) -> Model {
        m.view = v;
        m
    }

    #[test]
    fn waiting_lists_workers_and_how_to_start() {
        check("waiting", &model_of(testdata::waiting()));
    }

    #[test]
    fn overview_of_a_running_run() {
        check("overview", &with_history(testdata::running(), 30));
    }

    #[test]
    fn requests_view() {
        check(
            "requests",
            &on(model_of(testdata::running()), View::Requests),
        );
    }

    /// An `https://` run: connect and handshake p50 columns, connection counts at the bottom.
    #[test]
    fn requests_view_with_connections() {
        check(
            "requests_https",
            &on(model_of(testdata::https()), View::Requests),
        );
    }

    #[test]
    fn workers_view_marks_the_lost_one() {
        let m = on(model_of(testdata::running()), View::Workers);
        check("workers", &m);
        let buf = draw(&m, 80, 24);
        let row = (0..24)
            .find(|y| {
                (0..80)
                    .map(|x| buf[(x, *y)].symbol())
                    .collect::<String>()
                    .contains("w-three")
            })
            .unwrap();
        assert_eq!(buf[(10, row)].fg, Color::Red, "a lost worker's row is red");
    }

    #[test]
    fn charts_view() {
        check(
            "charts",
            &on(with_history(testdata::running(), 30), View::Charts),
        );
    }

    #[test]
    fn failures_view_with_events_and_log() {
        let mut m = on(model_of(testdata::running()), View::Failures);
        m.update(Msg::Logs(vec![
            "2026-12-01T13:37:52.311298Z  WARN worker lost: connection closed".into(),
            "INFO run finished".into(),
        ]));
        check("failures", &m);
    }

    #[test]
    fn llm_view() {
        check("llm", &on(with_history(testdata::llm(), 10), View::Llm));
    }

    #[test]
    fn priority_view_is_a_three_by_three_grid() {
        check(
            "priority",
            &on(model_of(testdata::priority()), View::Priority),
        );
    }

    #[test]
    fn downloads_view() {
        check(
            "downloads",
            &on(with_history(testdata::download(), 20), View::Downloads),
        );
    }

    #[test]
    fn help_over_the_view_and_a_status_in_the_footer() {
        let mut m = model_of(testdata::finished());
        m.update(Msg::Key(Key::Char('?')));
        m.status = Some(Status {
            text: "run 7 stopping".into(),
            error: false,
        });
        check("help", &m);
    }

    #[test]
    fn any_size_draws_without_panicking_and_keeps_the_footer() {
        for s in [
            testdata::waiting(),
            testdata::running(),
            testdata::llm(),
            testdata::https(),
        ] {
            let mut m = with_history(
                if s.run.is_some() {
                    s.clone()
                } else {
                    testdata::running()
                },
                5,
            );
            m.update(Msg::Snapshot(Arc::new(s)));
            for v in [
                View::Overview,
                View::Requests,
                View::Workers,
                View::Charts,
                View::Failures,
                View::Llm,
                View::Priority,
                View::Downloads,
            ] {
                m.view = v;
                for (w, h) in [(1, 1), (20, 5), (40, 12), (80, 24), (200, 60)] {
                    let screen = text(&draw(&m, w, h));
                    if w >= 60 {
                        assert!(screen.contains("q quit"), "{v:?} at {w}×{h}:\n{screen}");
                    }
                }
            }
        }
    }

    #[test]
    fn formats() {
        assert_eq!(secs(0.4), "0s");
        assert_eq!(secs(125.0), "2m05s");
        assert_eq!(secs(3720.0), "1h02m");
        assert_eq!(
            (ms(1.234), ms(12.34), ms(123.4)),
            ("1.23".into(), "12.3".into(), "123".into())
        );
        assert_eq!((rate(12.34), rate(1234.5)), ("12.3".into(), "1234".into()));
        assert_eq!(
            (count(9_999_999), count(12_345_678)),
            ("9999999".into(), "12.3M".into())
        );
        assert_eq!(
            (bytes(999.0), bytes(24_834_009.0)),
            ("999 B".into(), "24.8 MB".into())
        );
    }
}
