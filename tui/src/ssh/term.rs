//! The console's screen over an SSH channel: a ratatui backend that writes
//! crossterm's escape sequences into a buffer and hands each flushed frame
//! to the session as one message, and that takes its size from the client's
//! pty request and window changes instead of a local terminal.
//!
//! ratatui diffs each frame against the last one, so only the cells that
//! changed are written; [`SshWriter`] also drops a frame that would only
//! hide the already hidden cursor, so an unchanged screen sends nothing.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use tokio::sync::mpsc::UnboundedSender;

/// Hides the cursor (what ratatui writes after every frame).
const HIDE_CURSOR: &[u8] = b"\x1b[?25l";
/// Shows the cursor.
const SHOW_CURSOR: &[u8] = b"\x1b[?25h";

/// The client's terminal size, shared between the SSH handler (pty request,
/// window changes) and the backend.
#[derive(Debug, Clone)]
pub struct SharedSize(Arc<AtomicU32>);

impl SharedSize {
    pub fn new(width: u32, height: u32) -> SharedSize {
        let size = SharedSize(Arc::new(AtomicU32::new(0)));
        size.set(width, height);
        size
    }

    /// Sets the size, within 1..=1000 columns and rows; answers it.
    pub fn set(&self, width: u32, height: u32) -> (u16, u16) {
        let clamp = |v: u32| u16::try_from(v.clamp(1, 1000)).unwrap_or(1000);
        let (w, h) = (clamp(width), clamp(height));
        self.0.store(u32::from(w) << 16 | u32::from(h), Ordering::Relaxed);
        (w, h)
    }

    pub fn get(&self) -> Size {
        let packed = self.0.load(Ordering::Relaxed);
        Size { width: (packed >> 16) as u16, height: (packed & 0xffff) as u16 }
    }
}

/// Collects what the backend writes; each flush sends the collected bytes
/// as one message (nothing when there is nothing new to show).
#[derive(Debug)]
pub struct SshWriter {
    buffer: Vec<u8>,
    out: UnboundedSender<Vec<u8>>,
    cursor_hidden: bool,
}

impl SshWriter {
    pub fn new(out: UnboundedSender<Vec<u8>>) -> SshWriter {
        SshWriter { buffer: Vec::with_capacity(4096), out, cursor_hidden: false }
    }
}

impl Write for SshWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.cursor_hidden && self.buffer.ends_with(HIDE_CURSOR) {
            self.buffer.truncate(self.buffer.len() - HIDE_CURSOR.len());
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Some(last) = last_cursor_command(&self.buffer) {
            self.cursor_hidden = last == HIDE_CURSOR;
        }
        let frame = std::mem::replace(&mut self.buffer, Vec::with_capacity(4096));
        // When the session has ended the frame goes nowhere; the console
        // ends too, as its input stops.
        let _ = self.out.send(frame);
        Ok(())
    }
}

/// The last show or hide cursor command in `bytes`.
fn last_cursor_command(bytes: &[u8]) -> Option<&'static [u8]> {
    let at = |needle: &[u8]| bytes.windows(needle.len()).rposition(|w| w == needle);
    match (at(HIDE_CURSOR), at(SHOW_CURSOR)) {
        (Some(h), Some(s)) => Some(if h > s { HIDE_CURSOR } else { SHOW_CURSOR }),
        (Some(_), None) => Some(HIDE_CURSOR),
        (None, Some(_)) => Some(SHOW_CURSOR),
        (None, None) => None,
    }
}

/// crossterm's backend over an [`SshWriter`], sized by the SSH client.
#[derive(Debug)]
pub struct SshBackend {
    inner: CrosstermBackend<SshWriter>,
    size: SharedSize,
    cursor: Position,
}

impl SshBackend {
    pub fn new(writer: SshWriter, size: SharedSize) -> SshBackend {
        SshBackend { inner: CrosstermBackend::new(writer), size, cursor: Position::ORIGIN }
    }
}

/// For what ratatui does not write (alternate screen, messages).
impl Write for SshBackend {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Write::flush(&mut self.inner)
    }
}

impl Backend for SshBackend {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        // crossterm's backend resets the colours after any draw, even of no
        // cells: an unchanged frame writes nothing instead.
        let mut content = content.peekable();
        if content.peek().is_none() {
            return Ok(());
        }
        self.inner.draw(content)
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        self.inner.hide_cursor()
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        self.inner.show_cursor()
    }

    /// The last position set: a remote terminal cannot be asked synchronously.
    fn get_cursor_position(&mut self) -> io::Result<Position> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        self.cursor = position.into();
        self.inner.set_cursor_position(self.cursor)
    }

    fn clear(&mut self) -> io::Result<()> {
        self.inner.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        self.inner.clear_region(clear_type)
    }

    fn size(&self) -> io::Result<Size> {
        Ok(self.size.get())
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        Ok(WindowSize { columns_rows: self.size.get(), pixels: Size::default() })
    }

    fn flush(&mut self) -> io::Result<()> {
        Backend::flush(&mut self.inner)
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::widgets::Paragraph;
    use tokio::sync::mpsc;

    use super::*;

    fn terminal(
        width: u32,
        height: u32,
    ) -> (Terminal<SshBackend>, SharedSize, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let size = SharedSize::new(width, height);
        let terminal =
            Terminal::new(SshBackend::new(SshWriter::new(tx), size.clone())).expect("terminal");
        (terminal, size, rx)
    }

    fn frames(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_frame_is_one_message_and_an_unchanged_frame_sends_nothing() {
        let (mut terminal, _, mut rx) = terminal(80, 24);
        let draw = |t: &mut Terminal<SshBackend>, text: &str| {
            t.draw(|f| f.render_widget(Paragraph::new(text.to_owned()), f.area())).expect("draw");
        };
        draw(&mut terminal, "hello");
        let first = frames(&mut rx);
        assert_eq!(first.len(), 1, "one message per frame");
        assert!(String::from_utf8_lossy(&first[0]).contains("hello"));
        assert!(first[0].ends_with(HIDE_CURSOR));

        draw(&mut terminal, "hello");
        assert!(frames(&mut rx).is_empty(), "an unchanged screen sends nothing");

        draw(&mut terminal, "hellO");
        let changed = frames(&mut rx);
        assert_eq!(changed.len(), 1);
        let text = String::from_utf8_lossy(&changed[0]);
        assert!(text.contains('O') && !text.contains("hell"), "only the changed cell: {text:?}");
        assert!(changed[0].len() < 32, "{} bytes for one cell", changed[0].len());
    }

    #[test]
    fn the_size_comes_from_the_client_and_a_resize_redraws() {
        let (mut terminal, size, mut rx) = terminal(80, 24);
        terminal.draw(|f| assert_eq!((f.area().width, f.area().height), (80, 24))).expect("draw");
        frames(&mut rx);
        assert_eq!(size.set(100, 30), (100, 30));
        terminal
            .draw(|f| {
                assert_eq!((f.area().width, f.area().height), (100, 30));
                f.render_widget(Paragraph::new("x"), f.area());
            })
            .expect("draw");
        let sent = frames(&mut rx);
        assert!(String::from_utf8_lossy(&sent.concat()).contains("\x1b[2J"), "cleared on resize");
        assert_eq!(size.set(0, 5000), (1, 1000), "clamped");
    }
}
