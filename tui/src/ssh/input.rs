//! Terminal input bytes, as an SSH client sends them from the operator's
//! terminal, read into crossterm key events: what `EventStream` does for the
//! local terminal.
//!
//! Covered: printable UTF-8, Enter (CR, LF, CR LF), Tab, Shift-Tab
//! (`ESC [ Z`), Backspace (DEL or BS), Ctrl-letters, Esc, Alt-keys (`ESC`
//! before a key), the arrows, Home, End, Insert, Delete, Page Up/Down and
//! F1–F12 in their CSI (`ESC [`) and SS3 (`ESC O`) forms, with xterm
//! modifier parameters (`ESC [ 1 ; 5 A` is Ctrl-Up). Other escape
//! sequences (mouse reports, focus, ...) are skipped whole.
//!
//! Each read is parsed on its own: an SSH client sends a key's bytes in one
//! message, so an `ESC` that ends a read is the Esc key, not the start of a
//! sequence still to come.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};

/// The key events in `bytes`, in order.
pub fn parse_keys(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (key, used) = next_key(rest);
        if let Some(key) = key {
            keys.push(key);
        }
        rest = &rest[used.clamp(1, rest.len())..];
    }
    keys
}

fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent { code, modifiers, kind: KeyEventKind::Press, state: KeyEventState::NONE }
}

/// The key at the start of `bytes` (None for a skipped sequence) and how
/// many bytes it took.
fn next_key(bytes: &[u8]) -> (Option<KeyEvent>, usize) {
    match bytes {
        [0x1b] => (Some(key(KeyCode::Esc, KeyModifiers::NONE)), 1),
        [0x1b, b'[', rest @ ..] => csi(rest).map_or((None, bytes.len()), |(k, n)| (k, n + 2)),
        [0x1b, b'O', final_byte, ..] => (ss3(*final_byte, KeyModifiers::NONE), 3),
        [0x1b, 0x1b, ..] => (Some(key(KeyCode::Esc, KeyModifiers::NONE)), 1),
        [0x1b, rest @ ..] => {
            // ESC before a key: that key with Alt.
            let (inner, used) = plain(rest);
            (inner.map(|k| key(k.code, k.modifiers | KeyModifiers::ALT)), used + 1)
        }
        _ => plain(bytes),
    }
}

/// One key that is not an escape sequence: a control byte or a UTF-8
/// character.
fn plain(bytes: &[u8]) -> (Option<KeyEvent>, usize) {
    let none = KeyModifiers::NONE;
    let Some(&first) = bytes.first() else {
        return (None, 0);
    };
    let code = match first {
        b'\r' if bytes.get(1) == Some(&b'\n') => return (Some(key(KeyCode::Enter, none)), 2),
        b'\r' | b'\n' => KeyCode::Enter,
        b'\t' => KeyCode::Tab,
        0x7f | 0x08 => KeyCode::Backspace,
        0x00 => return (Some(key(KeyCode::Char(' '), KeyModifiers::CONTROL)), 1),
        0x01..=0x1a => {
            let letter = char::from(first - 1 + b'a');
            return (Some(key(KeyCode::Char(letter), KeyModifiers::CONTROL)), 1);
        }
        0x1c..=0x1f => {
            let digit = char::from(first - 0x1c + b'4');
            return (Some(key(KeyCode::Char(digit), KeyModifiers::CONTROL)), 1);
        }
        _ => {
            let len = match first {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => return (None, 1), // a stray continuation byte
            };
            let Some(c) = bytes
                .get(..len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.chars().next())
            else {
                return (None, 1);
            };
            let modifiers = if c.is_uppercase() { KeyModifiers::SHIFT } else { none };
            return (Some(key(KeyCode::Char(c), modifiers)), len);
        }
    };
    (Some(key(code, none)), 1)
}

/// xterm's modifier parameter (`1 + bits`: 1 Shift, 2 Alt, 4 Ctrl).
fn modifiers(param: u16) -> KeyModifiers {
    let bits = param.saturating_sub(1);
    let mut m = KeyModifiers::NONE;
    if bits & 1 != 0 {
        m |= KeyModifiers::SHIFT;
    }
    if bits & 2 != 0 {
        m |= KeyModifiers::ALT;
    }
    if bits & 4 != 0 {
        m |= KeyModifiers::CONTROL;
    }
    m
}

/// The key after `ESC O`.
fn ss3(final_byte: u8, m: KeyModifiers) -> Option<KeyEvent> {
    let code = match final_byte {
        b'A' => KeyCode::Up,
        b'B' => KeyCode::Down,
        b'C' => KeyCode::Right,
        b'D' => KeyCode::Left,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        b'P' => KeyCode::F(1),
        b'Q' => KeyCode::F(2),
        b'R' => KeyCode::F(3),
        b'S' => KeyCode::F(4),
        b'M' => KeyCode::Enter, // keypad Enter in application mode
        _ => return None,
    };
    Some(key(code, m))
}

/// The key of a CSI sequence (`bytes` starts after `ESC [`) and the bytes it
/// took; None when the sequence is not finished in `bytes`.
fn csi(bytes: &[u8]) -> Option<(Option<KeyEvent>, usize)> {
    // Parameter and intermediate bytes, then one final byte in 0x40..=0x7e.
    let end = bytes.iter().position(|b| (0x40..=0x7e).contains(b))?;
    let params = &bytes[..end];
    let final_byte = bytes[end];
    let used = end + 1;
    if params.iter().any(|b| !b.is_ascii_digit() && *b != b';') {
        return Some((None, used)); // private sequences (mouse, ...): skipped
    }
    let numbers: Vec<u16> = std::str::from_utf8(params)
        .unwrap_or_default()
        .split(';')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let first = numbers.first().copied().unwrap_or(0);
    let m = modifiers(numbers.get(1).copied().unwrap_or(1));
    let key = match final_byte {
        b'Z' => Some(key(KeyCode::BackTab, KeyModifiers::SHIFT | m)),
        b'~' => {
            let code = match first {
                1 | 7 => KeyCode::Home,
                2 => KeyCode::Insert,
                3 => KeyCode::Delete,
                4 | 8 => KeyCode::End,
                5 => KeyCode::PageUp,
                6 => KeyCode::PageDown,
                11..=15 => KeyCode::F(u8::try_from(first - 10).unwrap_or(1)),
                17..=21 => KeyCode::F(u8::try_from(first - 11).unwrap_or(6)),
                23 | 24 => KeyCode::F(u8::try_from(first - 12).unwrap_or(11)),
                _ => return Some((None, used)),
            };
            Some(key(code, m))
        }
        other => ss3(other, m),
    };
    Some((key, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode) -> KeyEvent {
        key(code, KeyModifiers::NONE)
    }

    fn with(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        key(code, m)
    }

    #[test]
    fn printable_text_and_utf8() {
        assert_eq!(
            parse_keys("aS:é€𝄞".as_bytes()),
            vec![
                k(KeyCode::Char('a')),
                with(KeyCode::Char('S'), KeyModifiers::SHIFT),
                k(KeyCode::Char(':')),
                k(KeyCode::Char('é')),
                k(KeyCode::Char('€')),
                k(KeyCode::Char('𝄞')),
            ]
        );
        assert_eq!(parse_keys(b" "), vec![k(KeyCode::Char(' '))]);
    }

    #[test]
    fn enter_tab_backspace_and_control_letters() {
        assert_eq!(parse_keys(b"\r"), vec![k(KeyCode::Enter)]);
        assert_eq!(parse_keys(b"\n"), vec![k(KeyCode::Enter)]);
        assert_eq!(parse_keys(b"\r\n"), vec![k(KeyCode::Enter)], "CR LF is one Enter");
        assert_eq!(parse_keys(b"\t"), vec![k(KeyCode::Tab)]);
        assert_eq!(parse_keys(b"\x7f\x08"), vec![k(KeyCode::Backspace), k(KeyCode::Backspace)]);
        let ctrl = KeyModifiers::CONTROL;
        assert_eq!(parse_keys(b"\x03"), vec![with(KeyCode::Char('c'), ctrl)]);
        assert_eq!(
            parse_keys(b"\x01\x1a"),
            vec![with(KeyCode::Char('a'), ctrl), with(KeyCode::Char('z'), ctrl)]
        );
        assert_eq!(parse_keys(b"\x00"), vec![with(KeyCode::Char(' '), ctrl)]);
    }

    #[test]
    fn a_lone_escape_is_esc_and_escape_before_a_key_is_alt() {
        assert_eq!(parse_keys(b"\x1b"), vec![k(KeyCode::Esc)]);
        assert_eq!(parse_keys(b"\x1b\x1b"), vec![k(KeyCode::Esc), k(KeyCode::Esc)]);
        assert_eq!(parse_keys(b"\x1bq"), vec![with(KeyCode::Char('q'), KeyModifiers::ALT)]);
        assert_eq!(parse_keys(b"\x1b\x7f"), vec![with(KeyCode::Backspace, KeyModifiers::ALT)]);
        // Esc, then a separate read with q: Esc and q.
        let keys: Vec<_> = [&b"\x1b"[..], b"q"].iter().flat_map(|r| parse_keys(r)).collect();
        assert_eq!(keys, vec![k(KeyCode::Esc), k(KeyCode::Char('q'))]);
    }

    #[test]
    fn cursor_and_editing_keys_in_csi_and_ss3_forms() {
        for (bytes, code) in [
            (&b"\x1b[A"[..], KeyCode::Up),
            (b"\x1b[B", KeyCode::Down),
            (b"\x1b[C", KeyCode::Right),
            (b"\x1b[D", KeyCode::Left),
            (b"\x1bOA", KeyCode::Up),
            (b"\x1bOB", KeyCode::Down),
            (b"\x1bOC", KeyCode::Right),
            (b"\x1bOD", KeyCode::Left),
            (b"\x1b[H", KeyCode::Home),
            (b"\x1b[F", KeyCode::End),
            (b"\x1bOH", KeyCode::Home),
            (b"\x1bOF", KeyCode::End),
            (b"\x1b[1~", KeyCode::Home),
            (b"\x1b[7~", KeyCode::Home),
            (b"\x1b[4~", KeyCode::End),
            (b"\x1b[8~", KeyCode::End),
            (b"\x1b[2~", KeyCode::Insert),
            (b"\x1b[3~", KeyCode::Delete),
            (b"\x1b[5~", KeyCode::PageUp),
            (b"\x1b[6~", KeyCode::PageDown),
            (b"\x1bOP", KeyCode::F(1)),
            (b"\x1bOS", KeyCode::F(4)),
            (b"\x1b[15~", KeyCode::F(5)),
            (b"\x1b[17~", KeyCode::F(6)),
            (b"\x1b[21~", KeyCode::F(10)),
            (b"\x1b[24~", KeyCode::F(12)),
        ] {
            assert_eq!(parse_keys(bytes), vec![k(code)], "{bytes:?}");
        }
    }

    #[test]
    fn shift_tab_and_modified_keys() {
        assert_eq!(parse_keys(b"\x1b[Z"), vec![with(KeyCode::BackTab, KeyModifiers::SHIFT)]);
        assert_eq!(parse_keys(b"\x1b[1;5A"), vec![with(KeyCode::Up, KeyModifiers::CONTROL)]);
        assert_eq!(parse_keys(b"\x1b[1;2D"), vec![with(KeyCode::Left, KeyModifiers::SHIFT)]);
        assert_eq!(
            parse_keys(b"\x1b[3;7~"),
            vec![with(KeyCode::Delete, KeyModifiers::CONTROL | KeyModifiers::ALT)]
        );
    }

    #[test]
    fn several_keys_in_one_read_and_unknown_sequences_skipped() {
        assert_eq!(
            parse_keys(b":orgs\r"),
            vec![
                k(KeyCode::Char(':')),
                k(KeyCode::Char('o')),
                k(KeyCode::Char('r')),
                k(KeyCode::Char('g')),
                k(KeyCode::Char('s')),
                k(KeyCode::Enter),
            ]
        );
        assert_eq!(
            parse_keys(b"j\x1b[Bk"),
            vec![k(KeyCode::Char('j')), k(KeyCode::Down), k(KeyCode::Char('k'))]
        );
        // An SGR mouse report and focus-in: nothing, and what follows is read.
        assert_eq!(parse_keys(b"\x1b[<0;12;5M\x1b[Iq"), vec![k(KeyCode::Char('q'))]);
        // An unfinished sequence at the end of a read is dropped, not misread.
        assert_eq!(parse_keys(b"a\x1b[1;5"), vec![k(KeyCode::Char('a'))]);
        // Invalid UTF-8 is skipped byte by byte.
        assert_eq!(parse_keys(b"\xff\x80x"), vec![k(KeyCode::Char('x'))]);
        assert_eq!(parse_keys(b""), vec![]);
    }
}
