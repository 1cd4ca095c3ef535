//! Drawing the users, schedules and audit views and the drill-downs
//! (members, an org's flags, a user, a job with its log, a worker's jobs,
//! part of a queue). Like `ui`, it only draws.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

use crate::app::{App, Detail, JobDetail, MembersPage, QueueJobPage, UserDetail, short_id};
use crate::ui::{ago, draw_selectable, kv, loading};
use orgstack::jobs::JobStatus;

/// Draws the drill-down on top.
pub fn draw(app: &App, detail: &Detail, frame: &mut Frame, area: Rect) {
    match detail {
        Detail::Members(page) => draw_members(page, frame, area),
        Detail::OrgFlags { page, row } => {
            let [title, rest] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
            let slug = page.orgs.first().map_or(String::new(), |o| o.slug.to_string());
            frame.render_widget(
                Line::from(format!(" flags of {slug}: space switches, x clears, Esc back")).bold(),
                title,
            );
            crate::ui::draw_flags(page, *row, 1, frame, rest);
        }
        Detail::User(user) => draw_user(user, app.now(), frame, area),
        Detail::Job(job) => draw_job(job, frame, area),
        Detail::Worker { id, row } => draw_worker(app, id, *row, frame, area),
        Detail::Queue(page) => draw_queue(page, app.now(), frame, area),
    }
}

fn status_style(status: JobStatus) -> Style {
    use JobStatus::*;
    match status {
        Dead => Style::new().red().bold(),
        Failed => Style::new().yellow(),
        Running => Style::new().cyan(),
        Succeeded => Style::new().green(),
        Queued | Cancelled => Style::new(),
    }
}

fn time(t: Option<chrono::DateTime<Utc>>) -> String {
    t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

pub fn draw_users(app: &App, frame: &mut Frame, area: Rect) {
    let Some(page) = &app.users else { return loading(frame, area, " users ") };
    let wide = area.width >= 120;
    let mut header = vec!["EMAIL", "NAME", "ACTIVE", "ADMIN", "LAST SIGN-IN"];
    if wide {
        header.extend(["CREATED", "ID"]);
    }
    let now = app.now();
    let rows = page.users.iter().map(|u| {
        let mut cells = vec![
            Cell::from(u.email.clone()),
            Cell::from(u.name.clone()),
            Cell::from(if u.is_active { "yes" } else { "no" }).style(if u.is_active {
                Style::new()
            } else {
                Style::new().red()
            }),
            Cell::from(if u.is_platform_admin { "admin" } else { "" }).bold(),
            Cell::from(
                u.last_login_at
                    .map_or("never".to_owned(), |t| format!("{} ago", ago(now, Some(t)))),
            ),
        ];
        if wide {
            cells.push(Cell::from(u.created_at.format("%Y-%m-%d %H:%M").to_string()));
            cells.push(Cell::from(u.id.to_string()));
        }
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Min(24),
        Constraint::Min(10),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(12),
    ];
    if wide {
        widths.extend([Constraint::Length(17), Constraint::Length(37)]);
    }
    let filter =
        if page.filter.is_empty() { String::new() } else { format!(" matching {:?}", page.filter) };
    let more = if page.users.len() as i64 >= crate::app::USERS_PAGE { "first " } else { "" };
    let table = Table::new(rows, widths).header(Row::new(header).bold()).block(
        Block::bordered()
            .title(format!(" users ({more}{}{filter}; / searches) ", page.users.len())),
    );
    draw_selectable(frame, area, table, app.user_row);
}

fn draw_members(page: &MembersPage, frame: &mut Frame, area: Rect) {
    let rows = page.members.iter().map(|m| {
        Row::new([
            Cell::from(m.email.clone()),
            Cell::from(m.name.clone()),
            Cell::from(m.role.as_str()).bold(),
            Cell::from(m.joined_at.format("%Y-%m-%d").to_string()),
        ])
    });
    let widths =
        [Constraint::Min(24), Constraint::Min(10), Constraint::Length(7), Constraint::Length(10)];
    let table = Table::new(rows, widths)
        .header(Row::new(["EMAIL", "NAME", "ROLE", "JOINED"]).bold())
        .block(Block::bordered().title(format!(
            " members of {} ({}): o/a/m/v sets owner/admin/member/viewer, Esc back ",
            page.org,
            page.members.len()
        )));
    draw_selectable(frame, area, table, page.row);
}

fn draw_user(detail: &UserDetail, now: DateTime<Utc>, frame: &mut Frame, area: Rect) {
    let user = &detail.user;
    let memberships: Vec<String> =
        detail.memberships.iter().map(|m| format!("{} ({})", m.slug, m.role.as_str())).collect();
    let about = vec![
        kv("email", user.email.clone()),
        kv("name", user.name.clone()),
        kv(
            "state",
            format!(
                "{}{}",
                if user.is_active { "active" } else { "inactive" },
                if user.is_platform_admin { ", platform admin" } else { "" }
            ),
        ),
        kv("orgs", if memberships.is_empty() { "-".to_owned() } else { memberships.join(", ") }),
    ];
    let [top, rest] = Layout::vertical([Constraint::Length(6), Constraint::Min(3)]).areas(area);
    frame.render_widget(
        Paragraph::new(about)
            .block(Block::bordered().title(format!(" {} (Esc back) ", user.email)))
            .wrap(Wrap { trim: true }),
        top,
    );
    let sessions = detail.sessions.iter().map(|s| {
        let state = match (s.revoked_at, s.expires_at < now) {
            (Some(_), _) => Cell::from("ended").dim(),
            (None, true) => Cell::from("expired").dim(),
            (None, false) => Cell::from("active").green(),
        };
        Row::new([
            Cell::from("session"),
            Cell::from(short_id(s.id)),
            state,
            Cell::from(format!("since {}", s.created_at.format("%Y-%m-%d %H:%M"))),
            Cell::from(
                s.last_used_at
                    .map_or("unused".to_owned(), |t| format!("used {} ago", ago(now, Some(t)))),
            ),
        ])
    });
    let keys = detail.keys.iter().map(|(slug, _, k)| {
        let state = match k.revoked_at {
            Some(_) => Cell::from("revoked").dim(),
            None => Cell::from("active").green(),
        };
        Row::new([
            Cell::from(format!("key {slug}")),
            Cell::from(format!("{} {}", k.prefix, k.name)),
            state,
            Cell::from(k.role.as_str()),
            Cell::from(
                k.last_used_at
                    .map_or("unused".to_owned(), |t| format!("used {} ago", ago(now, Some(t)))),
            ),
        ])
    });
    let widths = [
        Constraint::Length(16),
        Constraint::Min(12),
        Constraint::Length(8),
        Constraint::Length(22),
        Constraint::Min(10),
    ];
    let table = Table::new(sessions.chain(keys), widths)
        .header(Row::new(["WHAT", "ID / KEY", "STATE", "CREATED / ROLE", "LAST USED"]).bold())
        .block(Block::bordered().title(format!(
            " {} session(s), {} API key(s); x revokes ",
            detail.sessions.len(),
            detail.keys.len()
        )));
    draw_selectable(frame, rest, table, detail.row);
}

fn draw_job(detail: &JobDetail, frame: &mut Frame, area: Rect) {
    let job = &detail.job;
    let status = Span::styled(job.status.to_string(), status_style(job.status));
    let took = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => format!(" (ran {:.1}s)", (f - s).num_milliseconds() as f64 / 1000.0),
        _ => String::new(),
    };
    let mut lines = vec![
        Line::from(vec![
            Span::from("status   ").bold(),
            status,
            Span::raw(format!(
                "  attempt {}/{}  queue {}  by {}",
                job.attempts, job.max_attempts, job.queue, job.created_by
            )),
        ]),
        kv("created", format!("{}  run at {}", time(Some(job.created_at)), time(Some(job.run_at)))),
        kv("ran", format!("{} → {}{took}", time(job.started_at), time(job.finished_at))),
        kv("payload", job.payload.to_string()),
    ];
    if let Some(result) = &job.result {
        lines.push(kv("result", result.to_string()));
    }
    if let Some(worker) = &job.worker_id {
        lines.push(kv("worker", worker.clone()));
    }
    if let Some(error) = &job.error {
        lines.push(Line::from(vec![
            Span::from("error    ").bold(),
            Span::from(error.clone()).red(),
        ]));
    }
    let height = (lines.len() as u16 + 2).min(area.height / 2).max(4);
    let [top, log] = Layout::vertical([Constraint::Length(height), Constraint::Min(3)]).areas(area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(format!(
                " {} job {} of {} (R retry, c cancel, d discard, Esc back) ",
                job.kind,
                short_id(job.id),
                detail.org
            )))
            .wrap(Wrap { trim: true }),
        top,
    );
    // The tail of the log, `scroll` lines up from the end.
    let visible = usize::from(log.height.saturating_sub(2));
    let end = detail.logs.len().saturating_sub(detail.scroll);
    let start = end.saturating_sub(visible);
    let text: Vec<Line> = detail.logs[start..end]
        .iter()
        .map(|l| {
            let level = match l.level.as_str() {
                "error" => Span::from(format!("{:<5} ", l.level)).red(),
                "warn" => Span::from(format!("{:<5} ", l.level)).yellow(),
                _ => Span::from(format!("{:<5} ", l.level)).dim(),
            };
            Line::from(vec![
                Span::from(format!("{} #{} ", l.at.format("%H:%M:%S%.3f"), l.attempt)).dim(),
                level,
                Span::raw(l.line.clone()),
            ])
        })
        .collect();
    let follow = if detail.scroll == 0 { "following" } else { "scrolled: G follows" };
    frame.render_widget(
        Paragraph::new(text).block(
            Block::bordered()
                .title(format!(" log: {} line(s), {follow}; j/k scroll ", detail.logs.len())),
        ),
        log,
    );
}

fn draw_worker(app: &App, id: &str, row: usize, frame: &mut Frame, area: Rect) {
    let now = app.now();
    let jobs = app.worker_jobs(id);
    let rows = jobs.iter().map(|j| {
        Row::new([
            Cell::from(short_id(j.id)),
            Cell::from(j.kind.clone()),
            Cell::from(match j.org {
                None => "(platform)".to_owned(),
                Some(org) => app
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.slugs.get(&org).cloned())
                    .unwrap_or_else(|| org.to_string()),
            }),
            Cell::from(ago(now, j.started_at)),
        ])
    });
    let widths =
        [Constraint::Length(8), Constraint::Min(12), Constraint::Min(12), Constraint::Length(8)];
    let table = Table::new(rows, widths)
        .header(Row::new(["JOB", "KIND", "ORG", "RUNNING"]).bold())
        .block(Block::bordered().title(format!(
            " {id} runs {} job(s) now (live; Enter: the job, Esc back) ",
            jobs.len()
        )));
    draw_selectable(frame, area, table, row);
}

fn draw_queue(page: &QueueJobPage, now: DateTime<Utc>, frame: &mut Frame, area: Rect) {
    let wide = area.width >= 120;
    let rows = page.jobs.iter().map(|(slug, job)| {
        let status = match job.status {
            Some(status) => Cell::from(status.to_string()).style(status_style(status)),
            None => Cell::from(page.section.as_str()),
        };
        let since = job.since.map_or("-".to_owned(), |t| {
            if t > now {
                format!("in {}", ago(t, Some(now)))
            } else {
                format!("{} ago", ago(now, Some(t)))
            }
        });
        let mut cells = vec![
            Cell::from(short_id(job.id)),
            Cell::from(slug.clone().unwrap_or_else(|| "(platform)".to_owned())),
            Cell::from(job.kind.clone()),
            status,
            Cell::from(format!("{}/{}", job.attempts, job.max_attempts)),
            Cell::from(since),
        ];
        if wide {
            cells.push(Cell::from(job.worker.clone().unwrap_or_default()));
            cells.push(Cell::from(job.error.clone().unwrap_or_default()));
        }
        Row::new(cells)
    });
    let mut header = vec!["JOB", "ORG", "KIND", "STATUS", "TRIES", "SINCE"];
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Min(12),
        Constraint::Min(10),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(10),
    ];
    if wide {
        header.extend(["WORKER", "ERROR"]);
        widths.extend([Constraint::Min(14), Constraint::Min(20)]);
    }
    let mut filters = Vec::new();
    if !page.org.is_empty() {
        filters.push(format!("org {}", page.org));
    }
    if !page.kind.is_empty() {
        filters.push(format!("kind {}", page.kind));
    }
    let filters =
        if filters.is_empty() { String::new() } else { format!(", {}", filters.join(", ")) };
    let table = Table::new(rows, widths).header(Row::new(header).bold()).block(
        Block::bordered().title(format!(
            " {} jobs of {} ({}{filters}; f section, / filter, Enter job, Esc back) ",
            page.section,
            page.queue,
            page.jobs.len()
        )),
    );
    draw_selectable(frame, area, table, page.row);
}

pub fn draw_schedules(app: &App, frame: &mut Frame, area: Rect) {
    let Some(page) = &app.schedules else { return loading(frame, area, " schedules ") };
    let global_height = (page.global.len() as u16 + 3).min(area.height / 3).max(3);
    let [top, rest] =
        Layout::vertical([Constraint::Length(global_height), Constraint::Min(3)]).areas(area);
    let now = app.now();
    let next = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or("-".to_owned(), |t| format!("in {}", ago(t, Some(now))))
    };
    let rows = page.global.iter().map(|g| {
        Row::new([
            Cell::from(g.name.clone()),
            Cell::from(g.cron.clone()),
            Cell::from(g.kind.clone()),
            Cell::from(next(g.next_run_at)),
        ])
    });
    let widths =
        [Constraint::Min(20), Constraint::Length(14), Constraint::Min(12), Constraint::Length(10)];
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(["GLOBAL", "CRON", "KIND", "NEXT"]).bold())
            .block(Block::bordered().title(" global schedules (in code) ")),
        top,
    );
    let Some(org) = &page.org else {
        frame.render_widget(
            Paragraph::new("press / and type an org's slug to see its schedules")
                .block(Block::bordered().title(" org schedules ")),
            rest,
        );
        return;
    };
    let rows = page.schedules.iter().map(|s| {
        let last = match s.last_job_id.and_then(|id| page.outcomes.get(&id)) {
            Some(status) => Cell::from(format!(
                "{} {}",
                status,
                s.last_fire_at.map_or(String::new(), |t| format!("{} ago", ago(now, Some(t))))
            ))
            .style(status_style(*status)),
            None => Cell::from(if s.last_fire_at.is_some() { "fired" } else { "never" }),
        };
        Row::new([
            Cell::from(s.name.clone()),
            Cell::from(s.cron.clone()),
            Cell::from(s.kind.clone()),
            Cell::from(if s.enabled { "on" } else { "off" }).style(if s.enabled {
                Style::new().green()
            } else {
                Style::new().dim()
            }),
            Cell::from(next(s.next_run_at)),
            last,
        ])
    });
    let widths = [
        Constraint::Min(14),
        Constraint::Length(14),
        Constraint::Min(10),
        Constraint::Length(3),
        Constraint::Length(10),
        Constraint::Min(12),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(["NAME", "CRON", "KIND", "ON", "NEXT", "LAST"]).bold())
        .block(Block::bordered().title(format!(
            " schedules of {org} ({}; e on/off, N run now) ",
            page.schedules.len()
        )));
    draw_selectable(frame, rest, table, app.schedule_row);
}

pub fn draw_audit(app: &App, frame: &mut Frame, area: Rect) {
    let Some(page) = &app.audit else { return loading(frame, area, " audit ") };
    let wide = area.width >= 120;
    let rows = page.events.iter().map(|e| {
        let mut cells = vec![
            Cell::from(e.occurred_at.format("%m-%d %H:%M:%S").to_string()),
            Cell::from(e.actor.clone()),
            Cell::from(e.action.clone()).bold(),
            Cell::from(e.target.clone().unwrap_or_default()),
        ];
        if wide {
            cells.push(Cell::from(e.details.to_string()));
        }
        Row::new(cells)
    });
    let mut header = vec!["WHEN", "ACTOR", "ACTION", "TARGET"];
    let mut widths =
        vec![Constraint::Length(14), Constraint::Min(16), Constraint::Min(16), Constraint::Min(12)];
    if wide {
        header.push("DETAILS");
        widths.push(Constraint::Min(30));
    }
    let place = page.org.as_ref().map_or("the platform".to_owned(), |o| format!("org {o}"));
    let mut filters = Vec::new();
    if let Some(actor) = &page.search.actor {
        filters.push(format!("actor ~ {actor}"));
    }
    if let Some(action) = &page.search.action {
        filters.push(format!("action {action}*"));
    }
    let filters =
        if filters.is_empty() { String::new() } else { format!(", {}", filters.join(", ")) };
    let table =
        Table::new(rows, widths).header(Row::new(header).bold()).block(Block::bordered().title(
            format!(" audit of {place} (newest {}{filters}; / filters) ", page.events.len()),
        ));
    draw_selectable(frame, area, table, app.audit_row);
}
