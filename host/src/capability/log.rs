//! The `log` import and the plugin's stdout and stderr: lines go to the
//! agent's log as they are written, prefixed with the caller, up to a cap
//! per call. Past the cap the rest is counted, not kept, and one line at
//! the end of the call says how much was dropped.

use super::Sandbox;
use crate::bindings::slipway::plugin::log;
use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of log one call may write: the `log` import, stdout and stderr
/// together.
pub const LOG_CAP: usize = 1 << 20;
/// A stdio line longer than this is logged in pieces, so a plugin that never
/// writes a newline cannot make the host buffer without bound.
const MAX_LINE: usize = 16 << 10;
/// Lines kept for the message of a trapping plugin (see `last_words`):
/// enough for the whole of a deep Python traceback.
const TAIL_LINES: usize = 64;
const TAIL_LINE_BYTES: usize = 1024;

/// Where one call's log lines go. Cloned into the WASI stdout and stderr.
#[derive(Clone)]
pub struct LogSink(Arc<Mutex<Sink>>);

struct Sink {
    caller: String,
    left: usize,
    dropped: usize,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl LogSink {
    pub fn new(caller: String, cap: usize) -> LogSink {
        LogSink(Arc::new(Mutex::new(Sink {
            caller,
            left: cap,
            dropped: 0,
            partial: Vec::new(),
            tail: VecDeque::new(),
        })))
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        // A panic while holding the lock loses at most a log line.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One line from the `log` import.
    pub fn line(&self, level: log::Level, text: &str) {
        self.sink().emit(level, text);
    }

    /// Bytes the plugin wrote to stdout or stderr.
    pub fn write_stdio(&self, mut bytes: &[u8]) {
        let mut sink = self.sink();
        while !bytes.is_empty() {
            let room = MAX_LINE - sink.partial.len();
            let (line_end, rest) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) if i <= room => (Some(i), i + 1),
                _ if bytes.len() >= room => (Some(room), room),
                _ => (None, bytes.len()),
            };
            match line_end {
                Some(end) => {
                    let mut line = std::mem::take(&mut sink.partial);
                    line.extend_from_slice(&bytes[..end]);
                    sink.emit_stdio(&line);
                }
                None => sink.partial.extend_from_slice(bytes),
            }
            bytes = &bytes[rest..];
        }
    }

    /// End of the call: flush a last unterminated line and say what the cap
    /// dropped.
    pub fn finish(&self) {
        let mut sink = self.sink();
        let partial = std::mem::take(&mut sink.partial);
        if !partial.is_empty() {
            sink.emit_stdio(&partial);
        }
        if sink.dropped > 0 {
            tracing::warn!(
                "{}: log truncated: {} more bytes of log were dropped past the cap of {} KiB per call",
                sink.caller,
                sink.dropped,
                LOG_CAP >> 10
            );
            sink.dropped = 0;
        }
    }

    /// Who is calling, for the host's own lines about the call.
    pub fn caller(&self) -> String {
        self.sink().caller.clone()
    }

    /// The last lines written, cap or not.
    pub fn tail(&self) -> String {
        let sink = self.sink();
        sink.tail.iter().map(|l| format!("{l}\n")).collect()
    }
}

impl Sink {
    fn emit_stdio(&mut self, line: &[u8]) {
        // A CRLF line ending is a line ending, not a carriage return.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        if !text.trim().is_empty() {
            self.emit(log::Level::Info, &text);
        }
    }

    fn emit(&mut self, level: log::Level, text: &str) {
        let text = &printable(text);
        self.remember(text);
        if text.len() > self.left {
            self.left = 0;
            self.dropped += text.len();
            return;
        }
        self.left -= text.len();
        let who = &self.caller;
        match level {
            log::Level::Debug => tracing::debug!("{who}: {text}"),
            log::Level::Info => tracing::info!("{who}: {text}"),
            log::Level::Warn => tracing::warn!("{who}: {text}"),
            log::Level::Error => tracing::error!("{who}: {text}"),
        }
    }

    fn remember(&mut self, text: &str) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        let end = text.floor_char_boundary(TAIL_LINE_BYTES);
        self.tail.push_back(text[..end].to_owned());
    }
}

/// The line with its control characters but tab written out (`\r`,
/// `\u{1b}`): a plugin's line reaches the operator's terminal, where a
/// carriage return or an escape sequence would rewrite what is shown.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into();
    }
    text.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => c.escape_debug().to_string(),
            c => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// The import's state during one call.
pub struct LogCtx {
    pub sink: LogSink,
}

pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    log::add_to_linker::<_, HasSelf<LogCtx>>(linker, |s| &mut s.log)
}

impl log::Host for LogCtx {
    async fn log(&mut self, level: log::Level, message: String) {
        for line in message.lines() {
            self.sink.line(level, line);
        }
    }
}

// The sink as WASI's stdout and stderr: every write is accepted at once,
// so a chatty plugin never blocks or fails on its own output.

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_stdio(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_stdio(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(s: &LogSink) -> (usize, usize, usize) {
        let sink = s.sink();
        (sink.left, sink.dropped, sink.partial.len())
    }

    #[test]
    fn stdio_is_split_into_lines_and_bounded() {
        let s = LogSink::new("t".into(), 100);
        s.write_stdio(b"one\ntw");
        assert_eq!(state(&s), (97, 0, 2), "`one` logged, `tw` waits");
        s.write_stdio(b"o\n\n");
        assert_eq!(state(&s), (94, 0, 0));
        assert_eq!(s.tail(), "one\ntwo\n");
        s.write_stdio(&[b'x'; MAX_LINE + 10]);
        assert_eq!(
            state(&s),
            (0, MAX_LINE, 10),
            "a long line is cut at MAX_LINE"
        );
        s.finish();
        assert_eq!(
            state(&s),
            (0, 0, 0),
            "finish flushes and reports the drop once"
        );
    }

    #[test]
    fn the_cap_counts_the_log_import_and_stdio_together() {
        let s = LogSink::new("t".into(), 10);
        s.line(log::Level::Info, "12345");
        s.write_stdio(b"1234\n");
        assert_eq!(state(&s), (1, 0, 0));
        s.line(log::Level::Warn, "too long");
        assert_eq!(state(&s), (0, 8, 0));
        let tail = s.tail();
        assert!(
            tail.ends_with("too long\n"),
            "the tail keeps dropped lines: {tail}"
        );
    }

    #[test]
    fn control_characters_reach_the_log_written_out() {
        let s = LogSink::new("t".into(), LOG_CAP);
        s.line(log::Level::Info, "deployed\rFAILED \u{1b}[2Kok\tdone");
        s.write_stdio(b"a\x07b\r\nc\rd\n");
        assert_eq!(
            s.tail(),
            "deployed\\rFAILED \\u{1b}[2Kok\tdone\na\\u{7}b\nc\\rd\n"
        );
    }

    #[test]
    fn the_tail_is_bounded() {
        let s = LogSink::new("t".into(), LOG_CAP);
        for i in 0..100 {
            s.line(log::Level::Info, &format!("{i} {}", "é".repeat(1000)));
        }
        let tail = s.tail();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(
            tail.lines().all(|l| l.len() <= TAIL_LINE_BYTES),
            "cut on a char boundary"
        );
        let first = format!("{} ", 100 - TAIL_LINES);
        assert!(tail.starts_with(&first), "{}", &tail[..10]);
    }
}
