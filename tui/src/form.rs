//! A small form: labelled text fields, one focused; masked fields (a
//! password) are drawn as dots. Pure state, like the rest of the app.

use crossterm::event::{KeyCode, KeyEvent};

use crate::app::Command;

/// One text field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    /// Drawn as dots (a password).
    pub masked: bool,
}

/// What a form is for: how its values become a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Name, slug.
    CreateOrg,
    /// New name.
    RenameOrg { slug: String },
    /// A dangerous command runs only when the slug is typed back.
    TypedConfirm { expected: String, command: Box<Command> },
    /// Email, name, password, password again.
    CreateUser,
    /// Password, password again.
    SetPassword { email: String },
    /// Org slug, kind.
    QueueFilter { queue: String, section: orgstack::jobs::browse::Section },
    /// Org slug, actor, action.
    AuditFilter,
}

/// A form being filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub title: String,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub purpose: Purpose,
    /// Why the last submit was refused.
    pub error: Option<String>,
}

/// What a key did to a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKey {
    /// Still being filled in.
    Editing,
    /// Enter on the last field.
    Submit,
    /// Esc.
    Cancel,
}

impl Form {
    /// A form with `fields` as `(label, initial value, masked)`.
    pub fn new(
        title: impl Into<String>,
        purpose: Purpose,
        fields: &[(&'static str, &str, bool)],
    ) -> Form {
        Form {
            title: title.into(),
            fields: fields
                .iter()
                .map(|(label, value, masked)| Field {
                    label,
                    value: (*value).to_owned(),
                    masked: *masked,
                })
                .collect(),
            focus: 0,
            purpose,
            error: None,
        }
    }

    /// The value of field `i` (empty when there is none).
    pub fn value(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", |f| f.value.as_str())
    }

    pub fn key(&mut self, key: KeyEvent) -> FormKey {
        let last = self.fields.len().saturating_sub(1);
        match key.code {
            KeyCode::Esc => return FormKey::Cancel,
            KeyCode::Enter if self.focus >= last => return FormKey::Submit,
            KeyCode::Enter | KeyCode::Tab | KeyCode::Down => {
                self.focus = (self.focus + 1).min(last)
            }
            KeyCode::BackTab | KeyCode::Up => self.focus = self.focus.saturating_sub(1),
            KeyCode::Backspace => {
                if let Some(field) = self.fields.get_mut(self.focus) {
                    field.value.pop();
                }
            }
            KeyCode::Char(c) => {
                if let Some(field) = self.fields.get_mut(self.focus) {
                    field.value.push(c);
                }
            }
            _ => {}
        }
        FormKey::Editing
    }
}
