//! `/dev/mail` (development only): the messages the server would have
//! sent, newest first, when no `SMTP_URL` is set. `/dev/mail.json` is the
//! same as JSON.

use axum::Json;
use axum::extract::State;
use axum::response::Html;

use super::AppState;
use crate::email::StoredEmail;
use crate::error::ApiError;

const SHOWN: i64 = 50;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

async fn messages(state: &AppState) -> Result<Vec<StoredEmail>, ApiError> {
    state.mailer.mailbox(SHOWN).await.map_err(ApiError::internal)
}

pub async fn page(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let messages = messages(&state).await?;
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Dev mailbox</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#1f2328}\
         article{border:1px solid #d0d7de;border-radius:6px;padding:1em;margin:1em 0}\
         pre{white-space:pre-wrap;background:#f6f8fa;padding:.75em}\
         iframe{width:100%;height:22em;border:1px solid #d0d7de}</style></head><body>",
    );
    html.push_str("<h1>Dev mailbox</h1>");
    if state.mailer.is_mailbox() {
        html.push_str("<p>No <code>SMTP_URL</code> is set: emails are kept here (the newest 200) and written to the log.</p>");
    } else {
        html.push_str("<p><code>SMTP_URL</code> is set: emails go to that server; this list holds only earlier ones.</p>");
    }
    if messages.is_empty() {
        html.push_str("<p>No emails yet.</p>");
    }
    for m in &messages {
        html.push_str(&format!(
            "<article><h2>{}</h2><p><strong>To:</strong> {} &nbsp; <strong>From:</strong> {} &nbsp; <strong>At:</strong> {} &nbsp; <strong>Template:</strong> {}</p>\
             <pre>{}</pre><iframe sandbox title=\"HTML part\" srcdoc=\"{}\"></iframe></article>",
            escape(&m.email.subject),
            escape(&m.email.to.join(", ")),
            escape(&m.from),
            m.at.format("%Y-%m-%d %H:%M:%S UTC"),
            escape(&m.email.template),
            escape(&m.email.text),
            escape(&m.email.html),
        ));
    }
    html.push_str("</body></html>");
    Ok(Html(html))
}

pub async fn json(State(state): State<AppState>) -> Result<Json<Vec<StoredEmail>>, ApiError> {
    Ok(Json(messages(&state).await?))
}
