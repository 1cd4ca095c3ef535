//! Drawing: [`view`] turns an [`App`] into a frame and does nothing else.
//! Layouts fit an 80×24 terminal; wider ones get more columns.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap};

use crate::app::{App, View};
use crate::form::Form;

const SPINNER: [&str; 4] = ["|", "/", "-", "\\"];

/// Draws the whole console.
pub fn view(app: &App, frame: &mut Frame) {
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)])
            .areas(frame.area());
    draw_header(app, frame, header);
    match app.details.last() {
        Some(detail) => {
            frame.render_widget(Clear, body);
            crate::details::draw(app, detail, frame, body);
        }
        None => match app.view {
            View::Dashboard => draw_dashboard(app, frame, body),
            View::Orgs => draw_orgs(app, frame, body),
            View::Users => crate::details::draw_users(app, frame, body),
            View::Flags => match &app.flags {
                Some(page) => draw_flags(page, app.flag_row, app.flag_col, frame, body),
                None => loading(frame, body, " flags "),
            },
            View::Jobs => draw_jobs(app, frame, body),
            View::Queues => draw_queues(app, frame, body),
            View::Workers => draw_workers(app, frame, body),
            View::Schedules => crate::details::draw_schedules(app, frame, body),
            View::Audit => crate::details::draw_audit(app, frame, body),
        },
    }
    draw_footer(app, frame, footer);
    if let Some(form) = &app.form {
        draw_form(form, frame, body);
    }
    if app.help {
        draw_help(app, frame, body);
    }
}

/// A bordered "loading…" where a page has not arrived yet.
pub(crate) fn loading(frame: &mut Frame, area: Rect, title: &str) {
    frame.render_widget(
        Paragraph::new("loading…").block(Block::bordered().title(title.to_owned())),
        area,
    );
}

/// A form in a box in the middle of `area`: each field on its line, the
/// focused one with a cursor, masked ones as dots.
fn draw_form(form: &Form, frame: &mut Frame, area: Rect) {
    let mut lines = Vec::new();
    for (i, field) in form.fields.iter().enumerate() {
        let value = if field.masked {
            "•".repeat(field.value.chars().count())
        } else {
            field.value.clone()
        };
        let mut spans = vec![Span::from(format!("{:>28}: ", field.label)).bold(), Span::raw(value)];
        if i == form.focus {
            spans.push(Span::from("█").dim());
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(""));
    match &form.error {
        Some(error) => lines.push(Line::from(Span::from(error.clone()).red())),
        None => lines.push(Line::from("Enter next/submit  Tab/↑/↓ move  Esc cancel".dim())),
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = 76.min(area.width);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(format!(" {} ", form.title)).yellow())
            .wrap(Wrap { trim: false }),
        popup,
    );
}

fn draw_header(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::from(" orgstack ").bold().reversed(), Span::raw(" ")];
    let all: usize = View::ALL.iter().map(|v| v.name().len() + 2).sum();
    if usize::from(area.width) < all + 12 + app.operator.len() + 5 {
        // Too narrow for every name: this view, where it is, and who acts.
        let i = View::ALL.iter().position(|v| *v == app.view).unwrap_or(0) + 1;
        spans.push(Span::from(format!(" {} ", app.view.name())).bold().underlined());
        spans.push(Span::raw(format!(" {i}/{} (Tab, :name)", View::ALL.len())).dim());
        spans.push(Span::raw(format!("  as {}", app.operator)).dim());
        frame.render_widget(Line::from(spans), area);
        return;
    }
    for view in View::ALL {
        let name = format!(" {} ", view.name());
        spans.push(if view == app.view {
            Span::from(name).bold().underlined()
        } else {
            Span::raw(name)
        });
    }
    spans.push(Span::raw(format!("  as {}", app.operator)).dim());
    frame.render_widget(Line::from(spans), area);
}

fn draw_footer(app: &App, frame: &mut Frame, area: Rect) {
    let line = if let Some(prompt) = &app.prompt {
        Line::from(vec![Span::from(":").bold(), Span::raw(prompt.clone()), Span::from("█").dim()])
    } else if let Some(input) = &app.filter_input {
        Line::from(vec![Span::from("/").bold(), Span::raw(input.clone()), Span::from("█").dim()])
    } else if let Some(confirm) = &app.confirm {
        Line::from(Span::from(format!(" {}", confirm.question)).yellow().bold())
    } else if let Some(error) = &app.error {
        Line::from(Span::from(format!(" {error}")).red())
    } else {
        let state = match (app.loading, &app.snapshot) {
            (Some(_), _) => {
                format!("{} loading (Esc to abandon)", SPINNER[(app.ticks % 4) as usize])
            }
            (None, Some(s)) => format!("updated {}", s.taken_at.format("%H:%M:%S")),
            (None, None) => "no data yet".to_owned(),
        };
        let state = match &app.notice {
            Some(notice) => format!("{notice}; {state}"),
            None => state,
        };
        Line::from(vec![
            Span::raw(format!(" {state}")).dim(),
            Span::raw("   ? keys  : view  Tab next  q quit").dim(),
        ])
    };
    frame.render_widget(line, area);
}

fn placeholder(app: &App, frame: &mut Frame, area: Rect, title: &str) -> bool {
    if app.snapshot.is_some() {
        return false;
    }
    let text = if app.loading.is_some() { "loading…" } else { "no data (r to refresh)" };
    frame
        .render_widget(Paragraph::new(text).block(Block::bordered().title(title.to_owned())), area);
    true
}

fn draw_dashboard(app: &App, frame: &mut Frame, area: Rect) {
    if placeholder(app, frame, area, " dashboard ") {
        return;
    }
    let Some(s) = &app.snapshot else { return };
    let [top, graph] = Layout::vertical([Constraint::Length(9), Constraint::Min(4)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);

    let orgs: Vec<String> = s.orgs.iter().map(|(status, n)| format!("{n} {status}")).collect();
    let (depth, in_flight, dead) = s
        .queues
        .iter()
        .fold((0, 0, 0), |(d, f, x), q| (d + q.depth + q.scheduled, f + q.in_flight, x + q.dead));
    let oldest = s.queues.iter().map(|q| q.oldest_age_secs).fold(0.0, f64::max);
    let failed: u64 = s.workers.iter().map(|w| w.failed).sum();
    let live = s.workers.iter().filter(|w| !w.stale).count();
    let summary = vec![
        kv("orgs", orgs.join(", ")),
        kv("users", format!("{} ({} active)", s.users, s.active_users)),
        kv("workers", format!("{live} live, {} stale", s.workers.len() - live)),
        kv("queued", format!("{depth} waiting, {in_flight} running")),
        kv("oldest", age(oldest)),
        kv("failed", format!("{failed} (since the workers started)")),
        kv("dead", dead.to_string()),
    ];
    frame.render_widget(
        Paragraph::new(summary)
            .block(Block::bordered().title(" system "))
            .wrap(Wrap { trim: true }),
        left,
    );
    let health = vec![health_line("PostgreSQL", &s.postgres), health_line("Redis", &s.redis)];
    frame.render_widget(Paragraph::new(health).block(Block::bordered().title(" health ")), right);

    let data: Vec<u64> = app.throughput.iter().copied().collect();
    let width = usize::from(graph.width.saturating_sub(2));
    let shown = &data[data.len().saturating_sub(width)..];
    let now = app.throughput.back().copied().unwrap_or(0);
    let peak = shown.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .block(
                Block::bordered().title(format!(" jobs/s: {now} now, {peak} peak (last 10 min) ")),
            )
            .data(shown),
        graph,
    );
}

pub(crate) fn kv(key: &str, value: String) -> Line<'static> {
    Line::from(vec![Span::from(format!("{key:<8} ")).bold(), Span::raw(value)])
}

fn health_line(name: &str, state: &Result<f64, String>) -> Line<'static> {
    match state {
        Ok(ms) => Line::from(vec![
            Span::from(format!("{name:<11}")).bold(),
            Span::from("up ").green(),
            Span::raw(format!("{ms:.1} ms")),
        ]),
        Err(why) => Line::from(vec![
            Span::from(format!("{name:<11}")).bold(),
            Span::from("down ").red().bold(),
            Span::raw(why.clone()),
        ]),
    }
}

/// A rate per second, or `-` before two snapshots.
fn rate(per_sec: Option<f64>) -> String {
    match per_sec {
        None => "-".to_owned(),
        Some(r) if r >= 100.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

/// A counter, and on wide terminals its rate.
fn counted(total: u64, per_sec: Option<f64>, wide: bool) -> String {
    if wide { format!("{total} ({}/s)", rate(per_sec)) } else { total.to_string() }
}

pub(crate) fn age(secs: f64) -> String {
    match secs {
        s if s <= 0.0 => "-".to_owned(),
        s if s < 120.0 => format!("{s:.1}s"),
        s if s < 7200.0 => format!("{:.0}m", s / 60.0),
        s => format!("{:.1}h", s / 3600.0),
    }
}

pub(crate) fn ago(now: DateTime<Utc>, then: Option<DateTime<Utc>>) -> String {
    then.map_or("-".to_owned(), |t| {
        age((now - t).num_milliseconds() as f64 / 1000.0).replace('-', "0s")
    })
}

fn draw_orgs(app: &App, frame: &mut Frame, area: Rect) {
    let Some(page) = &app.orgs else {
        frame.render_widget(
            Paragraph::new("loading…").block(Block::bordered().title(" orgs ")),
            area,
        );
        return;
    };
    let wide = area.width >= 120;
    let mut header = vec!["SLUG", "NAME", "STATUS", "MEMBERS", "VERSION"];
    if wide {
        header.extend(["CREATED", "ID"]);
    }
    let rows = page.orgs.iter().map(|org| {
        let status = Cell::from(org.status.to_string()).style(match org.status {
            tenancy::OrgStatus::Active => Style::new(),
            tenancy::OrgStatus::Suspended => Style::new().yellow(),
            _ => Style::new().red(),
        });
        let behind = org.org_version < page.latest_version;
        let version = Cell::from(if behind {
            format!("{} (behind {})", org.org_version, page.latest_version)
        } else {
            org.org_version.to_string()
        })
        .style(if behind { Style::new().red().bold() } else { Style::new() });
        let members = page.members.get(&org.id).copied().unwrap_or(0);
        let mut cells = vec![
            Cell::from(org.slug.to_string()),
            Cell::from(org.name.clone()),
            status,
            Cell::from(members.to_string()),
            version,
        ];
        if wide {
            cells.extend([
                Cell::from(org.created_at.format("%Y-%m-%d %H:%M").to_string()),
                Cell::from(org.id.to_string()),
            ]);
        }
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Min(14),
        Constraint::Min(12),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(14),
    ];
    if wide {
        widths.extend([Constraint::Length(17), Constraint::Length(37)]);
    }
    let filter =
        if page.filter.is_empty() { String::new() } else { format!(" matching {:?}", page.filter) };
    let more = if page.orgs.len() as i64 >= crate::app::ORGS_PAGE { "first " } else { "" };
    let table =
        Table::new(rows, widths).header(Row::new(header).bold()).block(Block::bordered().title(
            format!(" orgs ({more}{}{filter}, by {}) ", page.orgs.len(), app.org_sort.name()),
        ));
    draw_selectable(frame, area, table, app.org_row);
}

fn draw_jobs(app: &App, frame: &mut Frame, area: Rect) {
    let Some(page) = &app.jobs else {
        let text = "choose an org in the orgs view and press Enter";
        frame.render_widget(Paragraph::new(text).block(Block::bordered().title(" jobs ")), area);
        return;
    };
    let wide = area.width >= 120;
    let now = app.snapshot.as_ref().map_or_else(Utc::now, |s| s.taken_at);
    let mut header = vec!["ID", "KIND", "STATUS", "TRIES", "CREATED", "ERROR"];
    if wide {
        header.splice(4..4, ["QUEUE", "BY"]);
    }
    let rows = page.jobs.iter().map(|job| {
        use orgstack::jobs::JobStatus::*;
        let status = Cell::from(job.status.to_string()).style(match job.status {
            Dead => Style::new().red().bold(),
            Failed => Style::new().yellow(),
            Running => Style::new().cyan(),
            Succeeded => Style::new().green(),
            Queued | Cancelled => Style::new(),
        });
        let mut cells = vec![
            Cell::from(crate::app::short_id(job.id)),
            Cell::from(job.kind.clone()),
            status,
            Cell::from(format!("{}/{}", job.attempts, job.max_attempts)),
            Cell::from(format!("{} ago", ago(now, Some(job.created_at)))),
            Cell::from(job.error.clone().unwrap_or_default()),
        ];
        if wide {
            cells.splice(4..4, [Cell::from(job.queue.clone()), Cell::from(job.created_by.clone())]);
        }
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Min(10),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Min(12),
    ];
    if wide {
        widths.splice(4..4, [Constraint::Length(10), Constraint::Length(24)]);
    }
    let status = page.status.map_or("all".to_owned(), |s| s.to_string());
    let table =
        Table::new(rows, widths).header(Row::new(header).bold()).block(Block::bordered().title(
            format!(" jobs of {} ({status}, newest {}; f filters) ", page.org, page.jobs.len()),
        ));
    draw_selectable(frame, area, table, app.job_row);
}

/// Flags × (global, each org): the value in force in each cell, bold where
/// it is set there, dim where inherited. The cursor is at (`row`, `col`).
pub(crate) fn draw_flags(
    page: &crate::app::FlagPage,
    row: usize,
    col: usize,
    frame: &mut Frame,
    area: Rect,
) {
    let [table_area, about] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(area);
    const NAME: u16 = 20;
    const COL: u16 = 9;
    // Org columns that fit after the name, default and global columns,
    // scrolled so the cursor's column is visible.
    let fit = usize::from(table_area.width.saturating_sub(2 + NAME + 2 * COL) / COL).max(1);
    let first_org = col.saturating_sub(fit).min(page.orgs.len().saturating_sub(fit));
    let shown: Vec<usize> = (first_org..page.orgs.len()).take(fit).collect();
    let mut header = vec![Cell::from("FLAG"), Cell::from("DEFAULT"), Cell::from("GLOBAL")];
    header.extend(shown.iter().map(|&i| Cell::from(page.orgs[i].slug.to_string())));
    let rows = page.flags.iter().enumerate().map(|(r, state)| {
        let mut cells = vec![Cell::from(state.name), Cell::from(on_off(state.default)).dim()];
        for c in std::iter::once(0).chain(shown.iter().map(|i| i + 1)) {
            let Some(cell) = page.cell(r, c) else { continue };
            let mut style = if cell.explicit { Style::new().bold() } else { Style::new().dim() };
            if r == row && c == col {
                style = style.reversed();
            }
            let text = if cell.explicit {
                format!("{}*", on_off(cell.enabled))
            } else {
                on_off(cell.enabled).to_owned()
            };
            cells.push(Cell::from(text).style(style));
        }
        Row::new(cells)
    });
    let mut widths =
        vec![Constraint::Length(NAME), Constraint::Length(COL), Constraint::Length(COL)];
    widths.extend(shown.iter().map(|_| Constraint::Length(COL)));
    let hidden = page.orgs.len() - shown.len();
    let title = if hidden > 0 {
        format!(" flags × global and {} orgs ({hidden} more: h/l scrolls) ", page.orgs.len())
    } else {
        format!(" flags × global and {} orgs ", page.orgs.len())
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).bold())
            .block(Block::bordered().title(title)),
        table_area,
    );
    let description = page.flags.get(row).map_or("", |f| f.description);
    let place = match col {
        0 => "global value".to_owned(),
        col => page.orgs.get(col - 1).map_or(String::new(), |o| format!("override for {}", o.slug)),
    };
    let text = vec![
        Line::raw(description),
        Line::from(format!("{place}; * set here, otherwise inherited").dim()),
    ];
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered()).wrap(Wrap { trim: true }),
        about,
    );
}

pub(crate) fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

/// Draws `table` with row `selected` highlighted (and scrolled into view).
pub(crate) fn draw_selectable(frame: &mut Frame, area: Rect, table: Table, selected: usize) {
    let table = table.row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_queues(app: &App, frame: &mut Frame, area: Rect) {
    if placeholder(app, frame, area, " queues ") {
        return;
    }
    let Some(s) = &app.snapshot else { return };
    let header =
        Row::new(["QUEUE", "DEPTH", "IN FLIGHT", "SCHEDULED", "DEAD", "OLDEST", "DONE/S", "STATE"])
            .bold();
    let rows = s.queues.iter().map(|q| {
        Row::new([
            Cell::from(q.name.to_string()),
            Cell::from(q.depth.to_string()),
            Cell::from(q.in_flight.to_string()),
            Cell::from(q.scheduled.to_string()),
            Cell::from(q.dead.to_string()).style(if q.dead > 0 {
                Style::new().red()
            } else {
                Style::new()
            }),
            Cell::from(age(q.oldest_age_secs)),
            Cell::from(rate(app.queue_rates.get(q.name.as_str()).copied())),
            Cell::from(if q.paused { "paused" } else { "active" }).style(if q.paused {
                Style::new().yellow()
            } else {
                Style::new()
            }),
        ])
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(format!(" queues ({}) ", s.queues.len())));
    draw_selectable(frame, area, table, app.queue_row);
}

fn draw_workers(app: &App, frame: &mut Frame, area: Rect) {
    if placeholder(app, frame, area, " workers ") {
        return;
    }
    let Some(s) = &app.snapshot else { return };
    let wide = area.width >= 120;
    let mut header = vec!["WORKER", "QUEUES", "CONC", "BUSY", "DONE", "FAILED", "UP", "BEAT"];
    if wide {
        header.extend(["HOST", "PID", "STATE"]);
    }
    let rows = s.workers.iter().map(|w| {
        let rates = app.worker_rates.get(&w.id).copied();
        let mut cells = vec![
            Cell::from(w.id.clone()),
            Cell::from(w.queues.join(",")),
            Cell::from(w.concurrency.to_string()),
            Cell::from(w.in_flight.to_string()),
            Cell::from(counted(w.processed, rates.map(|r| r.0), wide)),
            Cell::from(counted(w.failed, rates.map(|r| r.1), wide)),
            Cell::from(ago(s.taken_at, w.started_at)),
            Cell::from(ago(s.taken_at, w.last_beat)),
        ];
        if wide {
            cells.extend([
                Cell::from(w.host.clone()),
                Cell::from(w.pid.to_string()),
                Cell::from(w.state.clone()),
            ]);
        }
        let row = Row::new(cells);
        if w.stale { row.style(Style::new().dim().crossed_out()) } else { row }
    });
    let mut widths = vec![
        Constraint::Min(14),
        Constraint::Min(10),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(if wide { 16 } else { 8 }),
        Constraint::Length(if wide { 14 } else { 7 }),
        Constraint::Length(6),
        Constraint::Length(5),
    ];
    if wide {
        widths.extend([Constraint::Min(10), Constraint::Length(8), Constraint::Length(9)]);
    }
    let live = s.workers.iter().filter(|w| !w.stale).count();
    let table = Table::new(rows, widths)
        .header(Row::new(header).bold())
        .block(Block::bordered().title(format!(" workers ({live} live, stale ones struck out) ")));
    draw_selectable(frame, area, table, app.worker_row);
}

fn draw_help(app: &App, frame: &mut Frame, area: Rect) {
    let mut lines = vec![Line::from(format!("{} view", app.view.name())).bold(), Line::raw("")];
    let common: [(&str, &str); 6] = [
        (":name", "jump to a view (dashboard, orgs, flags, …)"),
        ("Tab / Shift-Tab", "next / previous view"),
        ("?", "this help"),
        ("Esc", "close, or abandon a slow refresh"),
        ("q", "quit"),
        ("Ctrl-C", "quit"),
    ];
    for (key, what) in app.view.keys().iter().chain(common.iter()) {
        lines.push(Line::from(vec![Span::from(format!("{key:>16}  ")).bold(), Span::raw(*what)]));
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = 64.min(area.width);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" keys ")), popup);
}
