//! Progress of long host operations (a build, a recreate, a wait until
//! ready, a plugin call), on stderr so `--json` stdout stays clean.
//!
//! On a terminal a spinner runs while the operation does, one line per
//! operation in flight (builds and replacements run side by side), showing
//! its latest output; in CI (stderr not a terminal, or `CI` set) nothing
//! animates and each operation ends with one timestamped line. Colour only
//! on a terminal, and never with NO_COLOR.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Copy)]
enum Mode {
    Spinner { color: bool },
    Plain,
}

fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| {
        let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
        if std::io::stderr().is_terminal() && !ci {
            Mode::Spinner {
                color: std::env::var_os("NO_COLOR").is_none(),
            }
        } else {
            Mode::Plain
        }
    })
}

/// The spinners on screen, which log lines must lift off while they print.
fn spinners() -> &'static MultiProgress {
    static SPINNERS: OnceLock<MultiProgress> = OnceLock::new();
    SPINNERS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Write to stderr without tearing a spinner. Errors are ignored, as the
/// log ignores a closed stderr.
fn write_stderr(buf: &[u8]) -> std::io::Result<()> {
    match mode() {
        Mode::Spinner { .. } => spinners().suspend(|| std::io::stderr().write_all(buf)),
        Mode::Plain => std::io::stderr().write_all(buf),
    }
}

/// An operation in progress; [`Task::end`] prints how it ended.
pub struct Task {
    label: String,
    start: Instant,
    bar: Option<ProgressBar>,
}

/// Start showing `label`, e.g. `backend: build api`.
pub fn start(label: impl Into<String>) -> Task {
    let label = label.into();
    let bar = match mode() {
        Mode::Plain => None,
        Mode::Spinner { .. } => {
            let bar = spinners().add(ProgressBar::new_spinner().with_message(label.clone()));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .expect("a valid template"),
            );
            bar.tick();
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        }
    };
    Task {
        label,
        start: Instant::now(),
        bar,
    }
}

impl Task {
    /// Show the operation's latest output (a build step, say) on its line.
    pub fn say(&self, detail: &str) {
        if let Some(bar) = &self.bar {
            let detail: String = detail.trim().chars().take(100).collect();
            bar.set_message(format!("{} · {detail}", self.label));
        }
    }

    pub fn end(mut self, ok: bool) {
        self.clear();
        let color = matches!(mode(), Mode::Spinner { color: true });
        let line = line(
            &self.label,
            ok,
            self.start.elapsed(),
            SystemTime::now(),
            color,
        );
        let _ = write_stderr(format!("{line}\n").as_bytes());
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            spinners().remove(&bar);
        }
    }
}

impl Drop for Task {
    // An operation abandoned by `?` or a panic must not leave a spinner.
    fn drop(&mut self) {
        self.clear();
    }
}

fn line(label: &str, ok: bool, elapsed: Duration, at: SystemTime, color: bool) -> String {
    let secs = elapsed.as_secs_f64();
    let (outcome, sgr) = match ok {
        true => (format!("done in {secs:.1} s"), "32"),
        false => (format!("failed after {secs:.1} s"), "31"),
    };
    let outcome = match color {
        true => format!("\x1b[{sgr}m{outcome}\x1b[0m"),
        false => outcome,
    };
    format!(
        "{} {label} … {outcome}",
        humantime::format_rfc3339_seconds(at)
    )
}

/// The log's writer (for `tracing_subscriber`): stderr, with the spinners
/// lifted off while a line prints, so the two never share a line.
pub fn log_writer() -> LogWriter {
    LogWriter
}

pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_stderr(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_when_what_and_how_long() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_720_801);
        let done = line(
            "backend: build api",
            true,
            Duration::from_millis(2900),
            at,
            false,
        );
        assert_eq!(
            done,
            "2026-11-26T19:20:01Z backend: build api … done in 2.9 s"
        );
        let failed = line(
            "backend: recreate api",
            false,
            Duration::from_secs(12),
            at,
            false,
        );
        assert!(
            failed.ends_with("recreate api … failed after 12.0 s"),
            "{failed}"
        );
        assert!(!done.contains('\x1b') && !failed.contains('\x1b'));
        let colored = line("x", true, Duration::ZERO, at, true);
        assert!(
            colored.contains("\x1b[32mdone in 0.0 s\x1b[0m"),
            "{colored:?}"
        );
    }
}
